"""Every CompressAI image architecture is a CompressLab model (models/compressai_models.py): each trains with
debug=smoke, its real-bitstream evaluation runs, its strings are CompressAI's own class's strings on the same weights
(so the real bpp is CompressAI's byte count), and its files decode to the same pixels in another process; what
cannot be coded is refused at config time in one line; zoo weights load through io/zoo.py from a local server."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from compressai.ops import compute_padding
from PIL import Image

from conftest import REPO, run_py, serve_zoo, train

warnings.filterwarnings("ignore", message=".*torch.jit.script.*")
import compressai.registry  # noqa: E402

from compresslab import models  # noqa: E402
from compresslab.errors import ConfigError  # noqa: E402

# tiny sizes (the architectures' structure, a fraction of the work); ELIC's default groups need M > 128
TINY = {
    "mbt2018-mean": ["model.N=16", "model.M=16"],
    "mbt2018": ["model.N=16", "model.M=16"],
    "cheng2020-anchor": ["model.N=16", "model.M=16"],
    "cheng2020-attn": ["model.N=16", "model.M=16"],
    "cheng2020-anchor-checkerboard": ["model.N=16", "model.M=16"],
    "elic2022-official": ["model.N=16", "model.M=32", "model.groups=[8,8,16]"],
    "elic2022-chandelier": ["model.N=16", "model.M=32", "model.groups=[8,8,16]"],
    "bmshj2018-factorized-relu": ["model.N=16", "model.M=16"],
}
FAST = ["trainer.max_steps=2", "trainer.limit_val_batches=0",
        "callbacks.rd_eval.max_images=1", "callbacks.rd_eval.crop=64", "data.max_train_images=8"]
REFUSED = ("mbt2018-vbr",)
VBR = ("bmshj2018-hyperprior-vbr", "mbt2018-mean-vbr")  # variable rate: tests/test_vbr.py


def test_every_registered_architecture_is_a_model_or_refused_in_one_line():
    """Parametrised by what CompressAI registers: a new image architecture without a decision fails here."""
    generic = models.get_model_class("compressai")
    for arch, cls in sorted(compressai.registry.MODELS.items()):
        if cls.__module__.startswith(("test_", "tests.")):  # a test's own class (test_context_decode registers one)
            continue
        if ".pointcloud" in cls.__module__ or ".video" in cls.__module__:
            with pytest.raises(ConfigError, match=f"'{arch}' is a (point-cloud|video) model"):
                generic.check_config({"name": "compressai", "arch": arch}, 8)
            continue
        yaml = REPO / "conf" / "model" / f"{arch}.yaml"
        assert yaml.is_file(), f"{arch} has no conf/model/{arch}.yaml"
        if arch in REFUSED:
            with pytest.raises(ConfigError,
                               match=f"'{arch}' is variable-rate with a serial context.*model={arch[:-4]}"):
                models.get_model_class(arch).check_config({"name": arch}, 8)
            continue
        assert arch in TINY or arch in VBR or arch in ("bmshj2018-factorized", "bmshj2018-hyperprior"), \
            f"{arch}: untested"
    with pytest.raises(ConfigError, match="'nope' is not registered in CompressAI; its image architectures: .*mbt2018"):
        generic.check_config({"name": "compressai", "arch": "nope"}, 8)
    with pytest.raises(ConfigError, match="model=cheng2020-anchor: .* model.M=48 differs from model.N=32"):
        models.get_model_class("cheng2020-anchor").check_config({"N": 32, "M": 48}, 8)
    with pytest.raises(ConfigError, match="model=elic2022-chandelier: deterministic_coding=true is implemented for "
                                          "the mean-scale hyperprior and joint autoregressive families only"):
        models.get_model_class("elic2022-chandelier").check_config({"N": 32, "M": 48, "deterministic_coding": True},
                                                                   8)
    assert models.build({"name": "mbt2018-mean", "N": 8, "M": 8}).deterministic_coding  # as our hyperprior
    # the context models: opt-in, recorded only when on (earlier checkpoints and files hold CompressAI's coding)
    assert not models.build({"name": "mbt2018", "N": 8, "M": 8}).deterministic_coding
    assert "deterministic_coding" not in models.build({"name": "mbt2018", "N": 8, "M": 8}).hparams_dict
    assert models.build({"name": "mbt2018", "N": 8, "M": 8, "deterministic_coding": True}).hparams_dict[
        "deterministic_coding"] is True
    with pytest.raises(ConfigError, match="model=elic2022-official: the default channel groups .* need M > 128"):
        models.get_model_class("elic2022-official").check_config({"N": 32, "M": 48, "groups": None}, 8)


def test_a_refused_architecture_is_one_line_from_train_py(tmp_path):
    r = run_py(["train.py", "model=mbt2018-vbr", "debug=smoke", "logger=csv",
                f"paths.output_dir={tmp_path}"], timeout=300)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    last = [ln for ln in r.stderr.strip().splitlines() if ln.strip()][-1]
    assert "'mbt2018-vbr' is variable-rate" in last and "model=mbt2018-mean-vbr" in last, last


def _reference(arch: str, model) -> torch.nn.Module:
    """CompressAI's own class with the same weights (its state dict loads as is: same keys)."""
    ref = compressai.registry.MODELS[arch](**{k: v for k, v in model.hparams_dict.items()
                                               if k in ("N", "M", "groups") and (k != "M" or "cheng" not in arch)})
    ref.load_state_dict(model.state_dict())
    return ref.eval()


def test_debug_smoke_as_typed_builds_every_registered_architecture():
    """`python train.py model=<arch> lambda=0.0067 debug=smoke` with no size overrides: smoke's M follows the
    architecture (N where it has one width, cheng2020; above 128 for ELIC's default groups), so the model's own check
    passes and it builds (the tiny sizes of the other tests are overrides a user does not type)."""
    from omegaconf import OmegaConf

    from conftest import compose

    for arch, cls in sorted(compressai.registry.MODELS.items()):
        if cls.__module__.startswith(("test_", "tests.")) or ".pointcloud" in cls.__module__ \
                or ".video" in cls.__module__ or arch in REFUSED:
            continue
        cfg = compose([f"model={arch}", "lambda=0.0067", "debug=smoke"])
        m = OmegaConf.to_container(cfg.model, resolve=True)
        models.get_model_class(m["name"]).check_config(m, int(cfg.trainer.max_steps))
        assert models.build(m).hparams_dict["N"] == 32, arch


@pytest.mark.slow
def test_a_one_width_architecture_trains_with_debug_smoke_exactly_as_typed(tmp_path, data_root):
    r = run_py(["train.py", "model=cheng2020-anchor", "lambda=0.0067", "debug=smoke", f"hydra.run.dir={tmp_path}"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((tmp_path / "done.json").read_text())["global_step"] == 8 and (tmp_path / "rd.json").is_file()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_root):
    """Each architecture trained with debug=smoke (tiny sizes, 2 steps) through the training entry point, with its
    real-bitstream Kodak evaluation (rd.json); a 64x64 Kodak crop compressed by the CLI's compress_file."""
    from compresslab.bitstream.codec import compress_file, decompress_file

    out = {}
    crop = tmp_path_factory.mktemp("crop") / "kodim23-64.png"
    img = Image.open(data_root / "kodak" / "kodim23.png").convert("RGB")
    img.crop((300, 200, 364, 264)).save(crop)
    for arch, sizes in TINY.items():
        d = tmp_path_factory.mktemp(arch)
        res = train(d, [f"model={arch}", *sizes, *FAST])
        ckpt = Path(res["last_ckpt"])
        clab = d / "crop.clab"
        info = compress_file(ckpt, crop, clab)
        here = decompress_file(clab, ckpt)  # in this process, without isolation
        rd = json.loads(next(d.rglob("rd.json")).read_text())
        out[arch] = {"ckpt": ckpt, "clab": clab, "info": info, "here": here, "rd": rd}
    return crop, out


@pytest.mark.parametrize("arch", sorted(TINY))
def test_smoke_training_codes_compressais_strings(trained, arch, data_root):
    from compresslab.evaluation.evaluator import center_crop
    from compresslab.data.images import load_image_tensor
    from compresslab.models.from_checkpoint import build_model_from_checkpoint

    crop, runs = trained
    run = runs[arch]
    model, _ = build_model_from_checkpoint(run["ckpt"])
    ref = _reference(arch, model)
    ref.update(force=True)
    with torch.no_grad():
        row = run["rd"]["per_image"][0]  # the training run's real-bitstream evaluation: a 64x64 Kodak crop
        x = center_crop(load_image_tensor(data_root / "kodak" / row["name"]), 64).unsqueeze(0)
        pad, _ = compute_padding(*x.shape[-2:], min_div=64)
        theirs = ref.compress(F.pad(x, pad))
        nbytes = sum(len(s) for g in theirs["strings"] for s in g)
        # mbt2018-mean's default: CompressAI's tables and means except at grid edges
        if getattr(model, "deterministic_coding", False):
            assert abs(row["bytes"] - nbytes) <= 0.01 * nbytes + 2, f"{arch}: {row['bytes']} vs {nbytes} bytes"
            model.deterministic_coding = False  # CompressAI's own coding, same weights
        ours = model.compress(F.pad(x, pad))
    assert ours["strings"] == theirs["strings"], f"{arch}: strings differ from CompressAI's"
    if "deterministic_coding" not in model.hparams_dict:
        assert row["bytes"] == nbytes, f"{arch}: the evaluation's bpp is not CompressAI's"
    assert run["info"]["payload_bytes"] > 0 and row["bpp"] == row["bytes"] * 8 / 64**2


def test_every_architecture_decodes_bit_exactly_in_another_process(trained, tmp_path):
    """One fresh process with one thread (this one encoded with two) decodes every architecture's file (the CLI's
    decompress_file) to the same pixels."""
    _, runs = trained
    jobs = [[str(r["clab"]), str(r["ckpt"]), str(tmp_path / f"{a}.png")] for a, r in runs.items()]
    code = ("import json, sys, torch\ntorch.set_num_threads(1)\n"
            "from compresslab.bitstream.codec import decompress_file\n"
            "for clab, ckpt, out in json.loads(sys.argv[1]):\n    decompress_file(clab, ckpt, out)\n")
    r = run_py(["-c", code, json.dumps(jobs)], timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    for arch, run in runs.items():
        there = Image.open(tmp_path / f"{arch}.png")
        assert list(there.getdata()) == list(run["here"].getdata()), f"{arch}: pixels differ in another process"


@pytest.fixture
def zoo_hub(server, tmp_path, monkeypatch):
    """mbt2018-mean q1 and cheng2020-anchor q1 in the zoo's released layout, from CompressAI's own classes at the
    zoo's sizes, served from 127.0.0.1; an empty torch hub cache."""
    url, files = server
    table = {}
    for arch in ("mbt2018-mean", "cheng2020-anchor"):
        table.update(json.loads(serve_zoo(url, files, tmp_path / arch, arch, [1]).read_text()))
    (tmp_path / "zoo_urls.json").write_text(json.dumps(table))
    env = {"TORCH_HOME": str(tmp_path / "torch"), "COMPRESSLAB_ZOO_URLS": str(tmp_path / "zoo_urls.json")}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env, files


def _served_reference(files, arch: str):
    """CompressAI's own model from the served file, loaded the way CompressAI loads its zoo."""
    import io

    from compressai.zoo.image import load_pretrained, model_architectures

    [(name, data)] = [(n, d) for n, d in files.files.items() if f"/{arch}-1-" in n]
    sd = load_pretrained(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))
    return model_architectures[arch].from_state_dict(sd).eval()


def test_zoo_weights_evaluate_as_is_with_compressais_byte_count(zoo_hub, data_root, tmp_path):
    env, files = zoo_hub
    out = tmp_path / "zoo-q1.json"
    r = run_py(["-m", "compresslab.cli", "evaluate", "zoo:mbt2018-mean:q1", "--max-images", "1", "--crop", "64",
                "--out", str(out)], timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    row = json.loads(out.read_text())["per_image"][0]
    from compresslab.data.images import load_image_tensor
    from compresslab.evaluation.evaluator import center_crop

    ref = _served_reference(files, "mbt2018-mean")
    ref.update(force=True)
    x = center_crop(load_image_tensor(data_root / "kodak" / row["name"]), 64).unsqueeze(0)
    with torch.no_grad():
        nbytes = sum(len(s) for g in ref.compress(x)["strings"] for s in g)
    assert row["bytes"] == nbytes and row["height"] == row["width"] == 64


def test_zoo_init_fine_tunes_and_cheng_sizes_load(zoo_hub, tmp_path):
    from compresslab.io.checkpoints import CheckpointError
    from compresslab.models.from_checkpoint import build_model_from_checkpoint

    env, files = zoo_hub
    model, meta = build_model_from_checkpoint("zoo:cheng2020-anchor:q1")  # N only: its latent has N channels
    assert meta["model"] == {"name": "cheng2020-anchor", "N": 128}
    ref = _served_reference(files, "cheng2020-anchor")
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in model.state_dict().items() if "_cdf" not in k)
    res = train(tmp_path / "ft", ["model=mbt2018-mean", "model.N=128", "model.M=192", "init_from=zoo:mbt2018-mean:q1",
                                  "lambda=0.013", *FAST, "callbacks.rd_eval.enabled=false"])
    origin = json.loads((Path(res["run_dir"]) / "init_from.json").read_text())
    assert origin["zoo"] == "zoo:mbt2018-mean:q1" and origin["sha256"]
    with pytest.raises(CheckpointError, match="publishes no cheng2020-attn model .* qualities \\[1, 2, 3, 4, 5, 6\\]"):
        build_model_from_checkpoint("zoo:cheng2020-attn:q7")


PLUGIN = '''
from compressai.models import MeanScaleHyperprior
from compressai.registry import register_model


@register_model("lab-mean-scale")
class LabMeanScale(MeanScaleHyperprior):
    """A lab's own CompressAI model: registered with CompressAI only, no CompressLab code."""
'''


def test_a_users_compressai_class_trains_and_decodes_elsewhere_with_no_code_here(tmp_path, monkeypatch):
    from compresslab.bitstream.codec import compress_file, decompress_file

    from conftest import assert_decodes_identically_elsewhere

    plugin = tmp_path / "lab_models.py"
    plugin.write_text(PLUGIN)
    res = train(tmp_path / "run", ["model=compressai", "model.arch=lab-mean-scale", f"plugins=[{plugin}]",
                                   "model.N=16", "model.M=16", *FAST])
    rd = json.loads(next((tmp_path / "run").rglob("rd.json")).read_text())
    assert rd["name"] == "lab-mean-scale" and rd["per_image"][0]["bytes"] > 0
    monkeypatch.setenv("COMPRESSLAB_PLUGINS", str(plugin))  # the decoding process imports the user's module too
    crop = tmp_path / "crop.png"
    Image.new("RGB", (64, 48), (90, 140, 200)).save(crop)
    compress_file(res["last_ckpt"], crop, tmp_path / "crop.clab")
    here = decompress_file(tmp_path / "crop.clab", res["last_ckpt"])
    assert_decodes_identically_elsewhere(tmp_path / "crop.clab", res["last_ckpt"], here, tmp_path)
