"""The committed experiment drivers still run end to end (tiny overrides; the recipes themselves are in conf/)."""

import pytest

import csv
import json
import os

from omegaconf import OmegaConf

from conftest import run_py

TINY = ["model.N=32", "model.M=48", "trainer.max_steps=2", "trainer.val_check_interval=2",
        "trainer.limit_val_batches=1", "data.batch_size=2", "data.max_train_images=8", "data.max_val_images=1",
        "data.val_patch_size=128", "callbacks.rd_eval.max_images=1", "callbacks.rd_eval.crop=128", "logger=csv"]


@pytest.mark.slow
def test_the_msp_cpu_proxy_pipeline_trains_both_models_and_summarises(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    r = run_py(["-m", "compresslab.drivers.pipeline", "msp_cpu_proxy", "--lambdas", "0.013", "0.0932",
                "--work", str(work), "--out", str(out), "--set", "hydra/launcher=basic", *TINY], timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    rows = {row["curve"]: row for row in csv.DictReader(open(out / "rd_table.csv"))}
    assert set(rows) == {"msp", "hyperprior"} and all(row["points"] == "2" for row in rows.values())
    assert "bd_rate_vs_hyperprior" in rows["msp"]  # 2 points: the BD-rate is reported unavailable, with the reason
    assert "need at least 4" in rows["msp"]["reference_note"]
    assert (out / "rd.png").stat().st_size > 0
    per = json.loads((out / "per_lambda.json").read_text())
    assert [r["lambda"] for r in per["rows"]] == [0.013, 0.0932]
    for r in per["rows"]:  # the change columns are computed from the two models' own Kodak numbers
        assert abs(r["psnr_change_db"] - (r["msp_psnr"] - r["hyperprior_psnr"])) < 1e-9
    cfgs = {m: OmegaConf.load(next((work / m / "sweep").glob("0_*/config.yaml"))) for m in ("msp", "hyperprior")}
    assert cfgs["msp"].model.transform == "gdn" and cfgs["msp"].model.profile == "fast"
    assert cfgs["msp"].trainer.max_steps == cfgs["hyperprior"].trainer.max_steps  # equal budgets
    assert cfgs["msp"].data == cfgs["hyperprior"].data


@pytest.mark.slow
def test_the_staged_pipeline_runs_queues_resumes_and_writes_pairwise_columns(tmp_path):
    """Two queues (hyperprior then factorized; MSP-fast on the hyperprior's transforms) through both stages of the
    rd_cpu_ctx recipe (conf/pipeline/rd_cpu_ctx.yaml) at smoke size; the published table has one pairwise column per
    reference; a rerun trains nothing."""
    work, out = tmp_path / "work", tmp_path / "out"
    r = run_py(["-m", "compresslab.drivers.pipeline", "rd_cpu_ctx", "--queues", "hyperprior,factorized",
                "--queues", "msp/fast_gdn", "--lambdas", "0.013", "--work", str(work), "--out", str(out),
                "--set", *TINY, "data.patch_size=128", "optim.scheduler.warmup_steps=0"], timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    rows = {row["curve"]: row for row in csv.DictReader(open(out / "rd_table.csv"))}
    assert set(rows) == {"msp", "hyperprior", "factorized"} and all(row["points"] == "1" for row in rows.values())
    assert "bd_rate_vs_factorized" in rows["msp"] and "bd_rate_vs_hyperprior" in rows["msp"]
    assert rows["hyperprior"]["note_vs_factorized"] and not rows["hyperprior"]["note_vs_hyperprior"]  # not vs itself
    assert "need at least 4" in rows["msp"]["note_vs_hyperprior"]  # 1 point: unavailable, with the reason
    assert len(list((out / "runs").glob("*/rd.json"))) == 3
    msp = OmegaConf.load(next((work / "msp_fast_gdn" / "sweep").glob("0_*/config.yaml")))
    hyp = OmegaConf.load(next((work / "hyperprior" / "sweep").glob("0_*/config.yaml")))
    assert msp.model.transform == "gdn" and msp.model.scales == 2 and msp.data.patch_size == 128
    assert msp.trainer.max_steps == hyp.trainer.max_steps and msp.data == hyp.data  # equal budgets
    log = (work / "msp_fast_gdn.log").read_text()
    assert "msp/fast_gdn pretrain: " in log and "msp/fast_gdn sweep lambda=0.013: " in log
    rd = json.loads((out / "runs" / "msp-lambda0.013" / "rd.json").read_text())
    assert rd["meta"]["schema"] == 2 and rd["meta"]["commit"] and rd["meta"]["machine"]["cpu"]  # through the schema
    assert rd["meta"]["run_dir"].endswith("msp_fast_gdn/sweep/0_ctx-msp-lambda0.013")  # relative under a checkout
    stamp = next((work / "msp_fast_gdn" / "sweep").glob("*/rd.json")).stat().st_mtime_ns
    r = run_py(["-m", "compresslab.drivers.pipeline", "rd_cpu_ctx", "--queues", "msp/fast_gdn", "--lambdas",
                "0.013", "--work", str(work), "--out", str(out), "--set", *TINY, "data.patch_size=128"], timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    log = (work / "msp_fast_gdn.log").read_text()
    assert "msp/fast_gdn pretrain: finished, skipped" in log and "msp/fast_gdn sweep: finished, skipped" in log
    assert next((work / "msp_fast_gdn" / "sweep").glob("*/rd.json")).stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_no_committed_file_names_a_machine_path():
    """Results are committed from a checkout: none may carry an absolute path of the machine they ran on (the
    checkout's parent folder: sibling checkouts, worktrees, the shared data)."""
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    try:
        files = subprocess.run(["git", "ls-files"], cwd=repo, capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        import pytest

        pytest.skip("not a git checkout")
    needle = str(repo.parent).rstrip("/") + "/"
    found = []
    for name in files:
        try:
            text = (repo / name).read_text()
        except (UnicodeDecodeError, OSError):
            continue  # binary files (figures, the study database)
        if needle in text:
            found.append(name)
    assert not found, f"absolute paths under {needle} in {found[:10]}"


def test_publishing_one_queue_keeps_the_other_curves_and_copies_each_runs_provenance(tmp_path):
    """A rerun limited to one model (the adaptive reproduction's `--queues factorized`) republishes that model's runs
    into a folder that also holds another model's: the table keeps both curves (it kept only the rerun's before), and
    each published point carries its run's config.yaml, git.json and git.diff with machine paths made relative."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    work, out = tmp_path / "work", tmp_path / "out"
    for model in ("factorized", "hyperprior"):  # finished runs: the committed results of experiments/rd_cpu_proxy
        for src in sorted((repo / "experiments/rd_cpu_proxy/runs").glob(f"{model}-lambda*/rd.json")):
            run = work / model / "sweep" / src.parent.name
            run.mkdir(parents=True)
            doc = json.loads(src.read_text())
            doc["meta"]["image_source"] = str(tmp_path / "data" / "kodak")  # as the training callback writes it
            (run / "rd.json").write_text(json.dumps(doc))
            (run / "config.yaml").write_text(f"run_dir: {run}\ndata_root: {tmp_path / 'data'}\n")
            (run / "git.json").write_text(json.dumps({"tree": str(tmp_path), "commit": "abc", "dirty": True}))
            (run / "git.diff").write_text("diff --git a/x b/x\n")
            (run / "done.json").write_text(json.dumps({"global_step": 3000, "wall_s": 412.5,
                                                       "last_ckpt": f"{run}/checkpoints/last.ckpt"}))
        pretrain = work / model / "pretrain"  # stage 1, the warm start: no point of the curve, part of its making
        pretrain.mkdir(parents=True)
        (pretrain / "done.json").write_text(json.dumps({"global_step": 14000, "wall_s": 1020.0}))
        (pretrain / "git.json").write_text(json.dumps({"commit": "def", "dirty": False}))
    import subprocess
    import sys

    env = {**os.environ, "COMPRESSLAB_DATA": str(tmp_path / "data"), "PYTHONWARNINGS": "ignore"}
    args = [sys.executable, "-m", "compresslab.drivers.pipeline", "rd_cpu_proxy", "--publish-only", "--work", "work",
            "--out", "out"]
    for queue in ("hyperprior", "factorized"):  # run from a folder of its own, as a user's checkout would be
        r = subprocess.run([*args, "--queues", queue], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    rows = {row["curve"]: row for row in csv.DictReader(open(out / "rd_table.csv"))}
    assert set(rows) == {"factorized", "hyperprior"}, rows.keys()
    committed = {row["curve"]: row for row in csv.DictReader(open(repo / "experiments/rd_cpu_proxy/rd_table.csv"))}
    assert rows["hyperprior"]["bd_rate_vs_factorized"] == committed["hyperprior"]["bd_rate_vs_factorized"]
    point = out / "runs" / "factorized-lambda0.013"
    cfg = (point / "config.yaml").read_text()
    assert str(tmp_path) not in cfg and "run_dir: work/factorized/sweep/" in cfg and "${COMPRESSLAB_DATA}" in cfg
    assert json.loads((point / "git.json").read_text()) == {"tree": ".", "commit": "abc", "dirty": True}
    assert (point / "git.diff").read_text().startswith("diff --git")
    assert json.loads((point / "rd.json").read_text())["meta"]["image_source"] == "${COMPRESSLAB_DATA}/kodak"
    done = json.loads((point / "done.json").read_text())  # steps and wall time, for the folder's README
    index = {row["run"]: row for row in json.loads((out / "runs" / "index.json").read_text())["runs"]}
    assert index["factorized-lambda0.013"]["wall_s"] == 412.5 and index["factorized-lambda0.013"]["curve"] == "factorized"
    assert index["factorized-pretrain"]["global_step"] == 14000 and index["factorized-pretrain"]["commit"] == "def"
    warm = out / "runs" / "factorized-pretrain"
    assert json.loads((warm / "done.json").read_text())["wall_s"] == 1020.0 and not (warm / "rd.json").exists()
    assert json.loads((warm / "git.json").read_text())["commit"] == "def"
    assert done["wall_s"] == 412.5 and done["last_ckpt"] == "work/factorized/sweep/factorized-lambda0.013/checkpoints/last.ckpt"
