import csv
import json
import os
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from compresslab.io.checkpoints import AtomicCheckpointIO, CheckpointError, load_checkpoint
from compresslab.training.module import NonFiniteLossError
from conftest import SMOKE, compose, run_py, train
from compresslab.conf import CONF_DIR


def test_compose_top_level_lambda_and_model_sizes():
    cfg = compose(["model=hyperprior", "lambda=0.01", "model.N=64", "seed=3"])
    assert cfg["lambda"] == 0.01 and cfg.seed == 3
    assert cfg.model.name == "hyperprior" and cfg.model.N == 64 and cfg.model.M == 192
    assert cfg.name == "hyperprior-lambda0.01"
    smoke = compose(["debug=smoke"])
    assert smoke.trainer.max_steps <= 20 and smoke.data.patch_size == 64 and smoke.trainer.accelerator == "cpu"
    assert smoke.callbacks.rd_eval.max_images == 2  # debug=smoke shrinks the callback too (applied last)


@pytest.mark.parametrize("overrides,crop", [(["model=msp/fast"], 128), (["model=msp/extra"], 256),
                                            (["model=hyperprior", "trainer=ddp"], 64),
                                            (["experiment=msp_cpu_proxy", "model=msp/fast"], 128)])
def test_debug_smoke_composes_with_models_trainers_and_experiments(overrides, crop):
    cfg = compose([*overrides, "debug=smoke"])
    assert cfg.data.patch_size == crop and cfg.data.val_patch_size == crop  # the model's own minimum crop
    assert cfg.trainer.max_steps == 8 and cfg.model.N == 32
    if "trainer=ddp" in overrides:
        assert cfg.trainer.strategy == "ddp"  # hardware untouched by the scale-down switch


@pytest.mark.slow
def test_impossible_combination_fails_before_any_work_with_one_line(tmp_path):
    run_dir = tmp_path / "run"
    r = run_py(["train.py", "model=msp/fast", "data.patch_size=64", f"hydra.run.dir={run_dir}"], timeout=120)
    assert r.returncode != 0
    err = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert err[-1] == ("config error: data.patch_size=64 is smaller than model=msp's minimum crop 128 (its latent "
                       "would vanish); set data.patch_size>=128"), r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert not (run_dir / "config.yaml").exists()  # nothing was written


@pytest.mark.slow
def test_msp_debug_smoke_trains_and_evaluates(tmp_path):
    res = train(tmp_path, ["model=msp/fast"])
    assert res["global_step"] == 8
    rd = json.loads((tmp_path / "rd.json").read_text())
    assert rd["meta"]["model"]["name"] == "msp" and rd["meta"]["images"] == 2


@pytest.mark.parametrize("overrides", [["trainer=ddp"], ["trainer=gpu"], ["logger=none"], ["loss=msssim"],
                                       ["experiment=quickstart"], ["hydra/launcher=slurm"], ["experiment=msp_paper"],
                                       ["experiment=msp_cpu_proxy", "model=msp/fast", "model.transform=gdn"]])
def test_groups_compose(overrides):
    from hydra import compose as hcompose, initialize_config_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = hcompose(config_name="train", overrides=overrides, return_hydra_config=True)
    if overrides == ["hydra/launcher=slurm"]:
        assert cfg.hydra.launcher._target_.endswith("SlurmLauncher") and cfg.hydra.launcher.gpus_per_node == 1
    if overrides == ["trainer=ddp"]:
        assert cfg.trainer.strategy == "ddp"
    if overrides == ["experiment=msp_paper"]:  # the experiment's `override /model` picks the 27-step profile on a GPU
        assert cfg.model.profile == "normal" and cfg.model.N == 192 and cfg.trainer.accelerator == "gpu"
    if overrides[0] == "experiment=msp_cpu_proxy":
        assert cfg.model.transform == "gdn" and cfg.model.M == 96 and cfg.data.patch_size == 128


def test_the_slurm_launcher_polls_job_states_at_most_state_poll_s_apart(monkeypatch):
    from hydra import compose as hcompose, initialize_config_dir
    from hydra.utils import instantiate
    from submitit.slurm import slurm

    from compresslab.training.slurm import install_state_watcher

    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = hcompose(config_name="train", overrides=["hydra/launcher=slurm", "hydra.launcher.state_poll_s=3"],
                       return_hydra_config=True)
    launcher = instantiate(cfg.hydra.launcher)
    assert launcher.state_poll_s == 3 and "state_poll_s" not in launcher.params  # ours, not an sbatch option
    with pytest.raises(Exception, match=r"hydra.launcher.state_poll_s=0 must be at least 1"):
        instantiate(cfg.hydra.launcher, state_poll_s=0)
    monkeypatch.setattr(slurm.SlurmJob, "watcher", slurm.SlurmJob.watcher)  # restored after the test
    install_state_watcher(3)
    assert slurm.SlurmJob.watcher._delay_s == 3  # submitit's watcher: 2, 4, ... s after a submission, then every 3 s


def test_bad_keys_fail_in_compose():
    with pytest.raises(ConfigCompositionException, match="nosuchkey"):
        compose(["nosuchkey=1"])
    with pytest.raises(ConfigCompositionException, match="nope"):
        compose(["model=nope"])


@pytest.mark.slow
def test_bad_key_fails_fast_from_the_command_line(tmp_path):
    r = run_py(["train.py", "model.nosuch=3", f"hydra.run.dir={tmp_path}/r"], timeout=60)
    assert r.returncode != 0
    assert "nosuch" in r.stderr and "not in struct" in r.stderr.lower()
    assert not (tmp_path / "r" / "checkpoints").exists()  # no work started


@pytest.mark.slow
def test_smoke_run_writes_provenance_and_checkpoints(tmp_path, caplog):
    import importlib.metadata
    import logging

    caplog.set_level(logging.INFO, logger="compresslab.training.progress")
    res = train(tmp_path, ["model=factorized", "callbacks.rd_eval.enabled=false", "seed=7"])
    eta = [r.getMessage() for r in caplog.records if r.getMessage().startswith("training: ")]
    assert len(eta) == 1 and eta[0].startswith("training: 8 steps at ") and "(measured over steps 2-7): ETA" in eta[0]
    done = json.loads((tmp_path / "done.json").read_text())
    assert done["global_step"] == 8 and done["model"]["name"] == "factorized" and done["loss_metric"] == "mse"
    assert 0 < done["wall_s"] < 600 and done["started_utc"].endswith("+00:00") and done["resumed_from"] is None
    assert res["global_step"] == compose(SMOKE).trainer.max_steps
    for f in ("config.yaml", "git.json", "git.diff", "pip-freeze.txt", "environment.json", "metrics.csv",
              "checkpoints/last.ckpt"):
        assert (tmp_path / f).is_file(), f
    cfg = OmegaConf.load(tmp_path / "config.yaml")
    assert cfg.seed == 7 and cfg.model.name == "factorized"
    assert f"compressai=={importlib.metadata.version('compressai')}" in (tmp_path / "pip-freeze.txt").read_text()
    commit = json.loads((tmp_path / "git.json").read_text())["commit"]
    assert isinstance(commit, str) and len(commit) == 40 and int(commit, 16) >= 0  # tests run in a git checkout
    ck = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")  # weights_only=True works on our checkpoints
    assert ck["compresslab"]["model"]["name"] == "factorized" and ck["global_step"] == res["global_step"]
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0]
    for col in ("train/loss", "train/bpp", "train/mse", "train/psnr", "train/aux_loss", "lr", "val/loss"):
        assert col in header


@pytest.mark.slow
def test_last_checkpoint_holds_the_final_weights_between_validations(tmp_path):
    res = train(tmp_path, ["callbacks.rd_eval.enabled=false", "trainer.max_steps=6", "trainer.val_check_interval=4"])
    ck = load_checkpoint(res["last_ckpt"])
    assert ck["global_step"] == 6  # not 4, the step of the last validation
    assert int(ck["optimizer_states"][0]["state"][0]["step"]) == 6


@pytest.mark.slow
def test_resume_continues_at_the_right_step(tmp_path):
    first = train(tmp_path / "a", ["callbacks.rd_eval.enabled=false", "trainer.max_steps=4",
                                   "trainer.val_check_interval=2"])
    assert first["global_step"] == 4
    ck = load_checkpoint(first["last_ckpt"])
    adam_steps = ck["optimizer_states"][0]["state"][0]["step"]
    assert int(adam_steps) == 4
    res = train(tmp_path / "a", ["callbacks.rd_eval.enabled=false", "trainer.max_steps=6",
                                 "trainer.val_check_interval=2", f"ckpt_path={first['last_ckpt']}"])
    assert res["global_step"] == 6
    ck2 = load_checkpoint(res["last_ckpt"])
    assert int(ck2["optimizer_states"][0]["state"][0]["step"]) == 6  # optimizer state continued, not restarted
    assert ck2["lr_schedulers"][0]["last_epoch"] >= 1  # plateau scheduler state carried over
    steps = [int(r["step"]) for r in csv.DictReader((tmp_path / "a" / "metrics.csv").open()) if r.get("train/loss")]
    assert steps == list(range(6))  # one metrics file: the first part's rows kept, none twice
    state = json.loads((tmp_path / "a" / "run.json").read_text())
    assert state["segments"][-1]["config_changed"] == ["trainer.max_steps: 4 -> 6"]  # named ckpt_path: recorded


@pytest.mark.slow
def test_resume_refuses_a_checkpoint_of_another_model(tmp_path, factorized_ckpt):
    # the message, not the path (which contains "factorized"), must say what is wrong and how to fix it
    with pytest.raises(ValueError, match="checkpoint holds model 'factorized' but this run builds 'hyperprior'; "
                                         "pass model=factorized"):
        train(tmp_path, ["model=hyperprior", "callbacks.rd_eval.enabled=false", f"ckpt_path={factorized_ckpt}"])


@pytest.mark.slow
def test_init_from_loads_weights_only(tmp_path, factorized_ckpt):
    res = train(tmp_path, ["callbacks.rd_eval.enabled=false", "trainer.max_steps=2", "lambda=0.0018",
                           f"init_from={factorized_ckpt}", "trainer.val_check_interval=2"])
    assert res["global_step"] == 2  # fresh schedule: counted from 0, not from the source's step
    with pytest.raises(CheckpointError, match="does not fit model hyperprior"):
        train(tmp_path / "b", ["model=hyperprior", "callbacks.rd_eval.enabled=false", f"init_from={factorized_ckpt}"])


@pytest.mark.slow
def test_nan_loss_stops_with_the_step_and_saves_nothing_corrupt(tmp_path, monkeypatch):
    from compresslab.evaluation import losses

    real = losses.RateDistortionLoss.forward
    calls = {"n": 0}

    def poisoned(self, output, target):
        out = real(self, output, target)
        if self.training:
            calls["n"] += 1
            if calls["n"] == 6:
                out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(losses.RateDistortionLoss, "forward", poisoned)
    with pytest.raises(NonFiniteLossError, match="global step 5"):
        train(tmp_path, ["callbacks.rd_eval.enabled=false", "trainer.val_check_interval=4"])
    ck = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")  # the step-4 checkpoint is intact and finite
    assert ck["global_step"] == 4
    assert all(torch.isfinite(v).all() for v in ck["state_dict"].values() if v.is_floating_point())


def test_atomic_checkpoint_survives_a_crash_during_save(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, path)

    def dies(obj, f, *a, **k):
        f.write(b"partial garbage")
        raise KeyboardInterrupt("killed during save")

    monkeypatch.setattr(torch, "save", dies)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["state_dict"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temp files left behind


@pytest.mark.slow
def test_corrupt_checkpoint_is_a_clear_error(tmp_path, factorized_ckpt):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(factorized_ckpt.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated, corrupt"):
        load_checkpoint(bad)


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path):
    r = run_py(["train.py", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_steps=4",
                "trainer.val_check_interval=2", "trainer.limit_val_batches=1", "data.patch_size=64",
                "data.val_patch_size=64", "data.batch_size=2", "data.val_batch_size=2", "data.num_workers=0",
                "data.max_train_images=16", "data.max_val_images=2", "model.N=32", "model.M=48", "logger=csv",
                "callbacks.rich_progress.enabled=false", "callbacks.rd_eval.max_images=1", "callbacks.rd_eval.crop=128",
                "threads=1", f"hydra.run.dir={tmp_path}/ddp"], timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout + r.stderr
    assert "parameters identical on 2 ranks" in out  # net weights AND quantiles stayed in sync
    ck = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.ckpt")
    assert ck["global_step"] == 4
    assert (tmp_path / "ddp" / "rd.json").is_file()


@pytest.mark.slow
def test_validation_reconstructions_reach_wandb(data_root, tmp_path):
    train(tmp_path, ["logger=wandb", "callbacks.rd_eval.enabled=false", "trainer.max_steps=2",
                     "trainer.val_check_interval=2"])
    media = list((tmp_path / "wandb").glob("offline-run-*/files/media/images/**/*.png"))
    assert media, "no validation reconstructions were logged to W&B"
    import numpy as np
    from PIL import Image

    from compresslab.data.images import find_images, load_image_tensor
    from compresslab.data.images import crop_patch

    size = int(compose(SMOKE)["data"]["val_patch_size"])
    # the left half of each logged pair is a validation image as the model saw it: a centre crop of one val image
    crops = [crop_patch(load_image_tensor(f), size, train=False).mean().item() for f in find_images(data_root / "val")]
    for path in media:
        px = np.asarray(Image.open(path).convert("RGB")).astype(float)
        assert px.std() > 10 and px.max() > 100, "a black (or flat) image was logged"
        left = px[:, : px.shape[1] // 2].mean() / 255
        assert min(abs(left - m) for m in crops) < 0.005, (path.name, left, crops)


@pytest.mark.slow
def test_nan_in_the_cached_latent_path_is_also_a_clear_error(tmp_path, factorized_ckpt, monkeypatch):
    from compresslab.models.adaptive import AdaptiveFactorized

    real = AdaptiveFactorized.rates_from_latent

    def poisoned(self, y, hw):
        out = real(self, y, hw)
        out["likelihoods"]["y"] = out["likelihoods"]["y"] * float("nan")
        return out

    monkeypatch.setattr(AdaptiveFactorized, "rates_from_latent", poisoned)
    with pytest.raises(NonFiniteLossError, match="global step 0.*bpp_y=nan"):
        train(tmp_path, ["model=adaptive", f"model.base_ckpt={factorized_ckpt}", "callbacks.rd_eval.enabled=false"])


@pytest.mark.slow
def test_progress_log_names_step_total_and_eta(tmp_path, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="compresslab.training.progress"):
        train(tmp_path, ["model=factorized", "callbacks.rd_eval.enabled=false",
                         "callbacks.progress_log.every_n_steps=4"])
    lines = [r.getMessage() for r in caplog.records if "s/step" in r.getMessage()
             and not r.getMessage().startswith("training: ")]  # the one early ETA line is its own test
    assert len(lines) == 2 and "step 4/8 (50 %)" in lines[0] and "step 8/8 (100 %)" in lines[1], lines
    assert " s/step, ETA " in lines[0] and "bpp " in lines[0] and "PSNR " in lines[0]


@pytest.mark.slow
def test_single_run_compares_with_several_anchors_and_plots_its_point(tmp_path, capsys):
    train(tmp_path, ["model=factorized", "callbacks.rd_eval.also_compare=[kodak/jpeg]", "callbacks.rd_eval.plot=true"])
    meta = json.loads((tmp_path / "rd.json").read_text())["meta"]
    assert set(meta["rate_change_vs"]) == {"kodak/vtm", "kodak/jpeg"}
    assert meta["rate_change_vs"]["kodak/vtm"] == meta["rate_change_vs_anchor"]
    out = capsys.readouterr().out
    assert "kodak/vtm" in out and "kodak/jpeg" in out
    assert (tmp_path / "rd_plot" / "rd.png").stat().st_size > 0


@pytest.mark.slow
def test_kodak_metrics_logged_are_measurements_only(tmp_path):
    train(tmp_path, ["callbacks.rd_eval.max_images=1", "trainer.max_steps=2", "trainer.val_check_interval=2"])
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"kodak/bpp", "kodak/psnr-rgb", "kodak/bpp_ratio", "kodak/rd_cost"} <= set(header)
    assert not [h for h in header if h in ("kodak/height", "kodak/width")], header
    import csv

    from compresslab.evaluation.metrics import mean_rd_cost

    row = [r for r in csv.DictReader((tmp_path / "metrics.csv").open()) if r.get("kodak/rd_cost")][-1]
    doc = json.loads((tmp_path / "rd.json").read_text())
    assert float(row["kodak/rd_cost"]) == pytest.approx(mean_rd_cost(doc["per_image"], doc["meta"]["lambda"]), rel=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("content", [b"\x00\x01 not a checkpoint", "pickle"])
def test_bad_init_from_ends_in_one_line(tmp_path, content):
    import pickle

    f = tmp_path / "evil.ckpt"
    if content == "pickle":  # a pickle that would run a command if it were unpickled unsafely
        class Evil:
            def __reduce__(self):
                return (os.system, (f"touch {tmp_path / 'pwned'}",))
        f.write_bytes(pickle.dumps(Evil()))
    else:
        f.write_bytes(content)
    r = run_py(["train.py", "debug=smoke", "logger=csv", f"init_from={f}", f"hydra.run.dir={tmp_path / 'run'}"],
               timeout=180)
    assert r.returncode != 0 and not (tmp_path / "pwned").exists()
    err = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert err[-1].startswith("checkpoint error: cannot read checkpoint") and "Traceback" not in r.stderr, r.stderr


@pytest.mark.slow
def test_one_bar_over_the_run_and_no_known_noise(tmp_path):
    """The bar spans max_steps (not "Epoch 0/-2") and shows bpp/PSNR; the per-run boilerplate warnings are gone."""
    r = run_py(["train.py", "debug=smoke", "logger=wandb", "callbacks.rich_progress.enabled=true", "trainer.max_steps=20",
                "callbacks.rd_eval.enabled=false", f"hydra.run.dir={tmp_path}/r"], timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout + r.stderr
    assert "train (steps)" in out and "20/20" in out and "Epoch 0/-2" not in out
    assert "bpp" in out and "PSNR" in out
    for noise in ("will be deleted", "anonymous setting", "Tip: For seamless", "LeafSpec"):
        assert noise not in out, noise


@pytest.mark.slow
@pytest.mark.parametrize("override,message", [("lambda=-0.01", "lambda=-0.01 must be a positive number"),
                                              ("optim.scheduler.name=cosine", "must exceed warmup_steps")])
def test_bad_lambda_and_schedule_fail_before_any_work(tmp_path, override, message):
    extra = ["+optim.scheduler.warmup_steps=10", "+optim.scheduler.total_steps=8"] if "cosine" in override else []
    r = run_py(["train.py", "debug=smoke", override, *extra, f"hydra.run.dir={tmp_path}/r"], timeout=120)
    assert r.returncode != 0 and message in r.stderr.strip().splitlines()[-1], r.stderr[-2000:]
    assert not (tmp_path / "r" / "config.yaml").exists()


@pytest.mark.slow
def test_callbacks_and_loggers_from_config_without_code(tmp_path):
    """Any Lightning callback/logger is a YAML file with a _target_: EarlyStopping + LearningRateMonitor + a second
    CSV logger added from the command line, each doing its job in a smoke run."""
    res = train(tmp_path, ["+callbacks/extra=[early_stopping,lr_monitor]", "+logger/extra=csv_copy",
                           "callbacks.rd_eval.enabled=false", "trainer.max_steps=6", "trainer.val_check_interval=2"])
    assert res["global_step"] == 6
    header = (tmp_path / "csv_copy" / "metrics.csv").read_text().splitlines()[0]
    assert "lr-Adam" in header and "val/loss" in header  # LearningRateMonitor's column, in the extra logger
    cfg = compose(SMOKE + ["+callbacks/extra=early_stopping"])
    assert cfg.callbacks.extra.early_stopping._target_.endswith("EarlyStopping")


@pytest.mark.slow
def test_every_offered_extra_callback_and_logger_trains_with_our_two_optimizer_module(tmp_path):
    """What conf/callbacks/extra and conf/logger/extra offer must work with RateDistortionModule (net + aux
    optimizers, manual optimisation): all of them at once in a 4-step smoke run with a checkpoint and validation.
    (StochasticWeightAveraging was offered and always failed: it takes one optimizer.)"""
    from compresslab.conf import CONF_DIR

    cbs = sorted(p.stem for p in (CONF_DIR / "callbacks" / "extra").glob("*.yaml"))
    lgs = sorted(p.stem for p in (CONF_DIR / "logger" / "extra").glob("*.yaml"))
    assert "ema" in cbs and "weight_averaging" not in cbs
    res = train(tmp_path, [f"+callbacks/extra=[{','.join(cbs)}]", f"+logger/extra=[{','.join(lgs)}]",
                           "callbacks.rd_eval.enabled=false", "trainer.max_steps=4", "trainer.val_check_interval=2"])
    assert res["global_step"] == 4 and Path(res["last_ckpt"]).is_file()
    ckpt = torch.load(res["last_ckpt"], map_location="cpu", weights_only=True)
    assert any("EMAWeightAveraging" in k for k in ckpt.get("callbacks", {})), list(ckpt.get("callbacks", {}))


@pytest.mark.slow
def test_a_broken_extra_logger_is_one_line(tmp_path):
    from compresslab.errors import ConfigError

    with pytest.raises(ConfigError, match=r"logger.extra.bad \(no.such.Logger\) could not be built"):
        train(tmp_path, ["+logger.extra.bad._target_=no.such.Logger", "callbacks.rd_eval.enabled=false"])


@pytest.mark.slow
def test_live_rd_view_every_n_steps_reaches_csv_jsonl_and_wandb(tmp_path):
    """callbacks.rd_eval.live_every_n_steps: a real-bitstream point on a fixed Kodak subset every N steps."""
    train(tmp_path, ["logger=wandb", "callbacks.rd_eval.live_every_n_steps=4", "callbacks.rd_eval.live_images=2",
                     "callbacks.rd_eval.live_crop=128", "callbacks.rd_eval.max_images=1"])
    points = [json.loads(line) for line in (tmp_path / "rd_live.jsonl").read_text().splitlines()]
    assert [p["step"] for p in points] == [4, 8] and all(p["images"] == 2 and p["crop"] == 128 for p in points)
    assert all(0 < p["bpp"] < 30 and 5 < p["psnr-rgb"] < 60 and 0.9 < p["bpp_ratio"] < 1.2 for p in points)
    tables = list((tmp_path / "wandb").glob("offline-run-*/files/media/table/kodak_live/rd*.table.json"))
    assert tables, "the live RD scatter was not logged to W&B"
    doc = json.loads(sorted(tables)[-1].read_text())
    curves = {row[0] for row in doc["data"]}
    assert curves == {"this run (live subset)", "kodak/vtm"} and len(doc["data"]) > 2
    per_image = list((tmp_path / "wandb").glob("offline-run-*/files/media/table/kodak_live/per_image*.table.json"))
    assert per_image and len(json.loads(per_image[0].read_text())["data"]) == 2


def test_live_scatter_rows_clip_the_anchor_to_the_runs_rates():
    from compresslab.training.callbacks import live_scatter_rows

    rows = live_scatter_rows([{"bpp": 0.2, "psnr-rgb": 27.0, "step": 100}], "kodak/vtm")
    anchor = [r for r in rows if r[0] == "kodak/vtm"]
    assert rows[0] == ["this run (live subset)", 0.2, 27.0, 100]
    assert anchor and max(r[1] for r in anchor) <= 0.4  # VTM's points above twice the run's rate are left out
    assert live_scatter_rows([], "kodak/vtm") == []


def test_wandb_mode_one_rule(monkeypatch):
    from compresslab.wandb_mode import wandb_mode

    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert wandb_mode() == "offline" and os.environ["WANDB_MODE"] == "offline"  # the default needs no account
    monkeypatch.delenv("WANDB_MODE")
    assert wandb_mode(offline=False) == "online"  # logger.wandb.offline=false
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode(offline=False) == "disabled"  # an explicit environment wins


@pytest.mark.slow
def test_progress_bar_reads_metrics_at_its_own_pace(tmp_path, monkeypatch):
    """Reading metrics is a GPU sync per read: the bar reads them on its first and last step and at most every
    REDRAW_S seconds in between, not after every step."""
    from compresslab.training.progress import StepProgressBar

    reads = []
    original = StepProgressBar._update_metrics
    monkeypatch.setattr(StepProgressBar, "REDRAW_S", 3600.0)
    monkeypatch.setattr(StepProgressBar, "_update_metrics",
                        lambda self, trainer, pl_module: reads.append(trainer.global_step) or original(self, trainer, pl_module))
    train(tmp_path, ["callbacks.rich_progress.enabled=true", "callbacks.rd_eval.enabled=false", "trainer.max_steps=8",
                     "trainer.val_check_interval=8"])
    train_reads = [s for s in reads if s > 0]
    assert train_reads[0] == 1 and train_reads[-1] == 8, reads
    assert not [s for s in train_reads if 1 < s < 8], reads  # nothing read between the first and the last step


@pytest.mark.slow
def test_a_users_model_dataset_and_experiment_from_outside_the_repository(data_root, tmp_path):
    """Extending without forking: a model class in the user's own .py (plugins=[...]), its config, a dataset config
    and a recipe in the user's own folder (hydra.searchpath); train.py runs it and the CLI evaluates its checkpoint
    with the plugin named in $COMPRESSLAB_PLUGINS."""
    conf = tmp_path / "myconf"
    (conf / "model").mkdir(parents=True)
    (conf / "experiment").mkdir()
    (conf / "data").mkdir()
    (tmp_path / "my_models.py").write_text(
        "from compresslab.models import register_model\n"
        "from compresslab.models.factorized import Factorized\n\n\n"
        "@register_model('wide_factorized')\n"
        "class WideFactorized(Factorized):\n"
        "    '''my idea: the factorized model, registered under my own name'''\n")
    (conf / "model" / "wide_factorized.yaml").write_text("name: wide_factorized\nN: 32\nM: 56\n")
    (conf / "data" / "my_photos.yaml").write_text(f"defaults:\n  - default\nname: my_photos\nroot: {data_root}\n")
    (conf / "experiment" / "my_recipe.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /model: wide_factorized\n  - override /data: my_photos\n"
        "name: my-recipe\nlambda: 0.02\n")
    r = run_py(["train.py", f"hydra.searchpath=[file://{conf}]", "experiment=my_recipe",
                f"plugins=[{tmp_path / 'my_models.py'}]", *SMOKE, "model.M=56", "logger=csv",
                f"hydra.run.dir={tmp_path / 'run'}"], timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    cfg = OmegaConf.load(next((tmp_path / "run" / ".hydra").glob("*/config.yaml")))  # one folder per start
    assert cfg.model.name == "wide_factorized" and cfg.data.name == "my_photos" and cfg["lambda"] == 0.02
    rd = json.loads((tmp_path / "run" / "rd.json").read_text())
    assert rd["meta"]["model"]["name"] == "wide_factorized" and rd["results"]["bpp"][0] > 0
    r = run_py(["-m", "compresslab.cli", "evaluate", str(tmp_path / "run" / "checkpoints" / "last.ckpt"),
                "--images", str(data_root / "kodak"), "--max-images", "1", "--crop", "64",
                "--out", str(tmp_path / "e.json")], env={"COMPRESSLAB_PLUGINS": str(tmp_path / "my_models.py")})
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.slow
def test_a_user_yaml_named_like_a_built_in_wins_and_is_named(tmp_path):
    """hydra.searchpath=[file://my/conf] with my model/factorized.yaml: mine is composed (Hydra alone would keep the
    built-in, since it appends search paths after the primary config's folder), and the run says which file."""
    from compresslab.app import shadowed_configs

    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / "factorized.yaml").write_text("name: factorized\nN: 77\nM: 96\n")
    r = run_py(["train.py", "model=factorized", f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "--cfg", "job"],
               timeout=120, env={"COMPRESSLAB_CONF_PATH": ""})
    assert r.returncode == 0, r.stderr
    model = OmegaConf.create(r.stdout).model
    assert (model.N, model.M) == (77, 96)
    r = run_py(["train.py", "model=factorized", "--cfg", "job"], timeout=120, env={"COMPRESSLAB_CONF_PATH": ""})
    assert OmegaConf.create(r.stdout).model.N == 128  # without the search path, the built-in
    lines = shadowed_configs({"model": "factorized", "loss": "mse"}, [f"file://{tmp_path / 'conf'}"])
    assert lines == [f"config model=factorized: using {tmp_path / 'conf' / 'model' / 'factorized.yaml'} (yours; it "
                     f"shadows the built-in conf/model/factorized.yaml)"]
