"""``compresslab export``: weights out in CompressAI's format (its own classes and eval_model load them, same bytes)
or in ours (a header that says model, profile and sizes: ``compresslab evaluate`` needs no flags), never over the
input; files that are not checkpoints get one line each; a wrong architecture names the missing key groups."""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

import pytest
import torch

from conftest import REPO, run_py, train

CLI = ["-m", "compresslab.cli"]


def one_line_error(r) -> str:
    assert r.returncode == 2, (r.stdout, r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "weights_only=False" not in r.stderr and "weights_only` set to `False" not in r.stderr
    return lines[0]


def _bad_files(d: Path) -> dict[str, Path]:
    import pickle

    import numpy as np
    from PIL import Image

    d.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8)).save(d / "image.png")
    (d / "pickle.pkl").write_bytes(pickle.dumps({"w": np.zeros(3)}))
    (d / "notes.txt").write_text("epoch: 1\nloss 0.3\n")
    (d / "empty.ckpt").write_bytes(b"")
    torch.save({"w": np.zeros(3)}, d / "numpy_inside.pt")
    torch.save({"w": torch.zeros(3)}, d / "good.pt")
    data = (d / "good.pt").read_bytes()
    (d / "truncated.pt").write_bytes(data[: len(data) // 2])
    return {p.stem: p for p in d.iterdir() if p.stem != "good"}


EXPECTED = {"image": "is a PNG image", "pickle": "is a Python pickle", "notes": "is a text file (first line 'epoch: 1')",
            "empty": "is empty (0 bytes)", "numpy_inside": "stores a numpy", "truncated": "truncated, corrupt"}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["image", "pickle", "notes", "empty"])
def test_a_file_that_is_not_a_checkpoint_gets_one_line_saying_what_it_is(tmp_path, kind):
    bad = _bad_files(tmp_path / "in")[kind]
    # with Python's default warning filters, as a user's shell has them (run_py's default silences warnings)
    line = one_line_error(run_py([*CLI, "export", str(bad), str(tmp_path / "out.pth")], timeout=120,
                                 env={"PYTHONWARNINGS": ""}))
    assert EXPECTED[kind] in line and str(bad) in line
    assert not (tmp_path / "out.pth").exists()


def test_every_bad_input_kind_in_process(tmp_path, capsys):
    """The same messages for the rest, through the CLI's main (no process start per file)."""
    import warnings

    from compresslab.cli import main

    for kind, bad in _bad_files(tmp_path / "in").items():
        with warnings.catch_warnings(record=True) as shown:  # a user's terminal shows a warning before the line
            warnings.simplefilter("always")
            assert main(["export", str(bad), str(tmp_path / "out.pth")]) == 2
        # (torch's jit.script deprecation at compressai's first import: the CLI filters it in a user's process)
        said = [str(w.message) for w in shown if "torch.jit.script" not in str(w.message)]
        assert not said, (kind, said)
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and EXPECTED[kind] in err, (kind, err)
        assert "weights_only" not in err.replace("weights-only", "")


@pytest.mark.slow
def test_export_never_destroys_its_input_or_an_existing_file(tmp_path, factorized_ckpt, capsys):
    from compresslab.cli import main

    before = factorized_ckpt.read_bytes()
    # as a user types it: `compresslab export c.ckpt c.ckpt` once in its own process, the other cases through main
    line = one_line_error(run_py([*CLI, "export", str(factorized_ckpt), str(factorized_ckpt)], timeout=120))
    assert "refusing to write over the input" in line

    def refused(*argv: str) -> str:
        assert main(["export", *map(str, argv)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        return err[0]

    (tmp_path / "link.ckpt").symlink_to(factorized_ckpt)
    os.link(factorized_ckpt, tmp_path / "hard.ckpt")
    for out in (tmp_path / "link.ckpt", tmp_path / "hard.ckpt"):
        for force in ([], ["--force"]):
            assert "refusing to write over the input" in refused(factorized_ckpt, out, *force)
    assert factorized_ckpt.read_bytes() == before
    existing = tmp_path / "exists.pth"
    existing.write_text("keep me")
    assert "exists; pass --force" in refused(factorized_ckpt, existing) and existing.read_text() == "keep me"
    (tmp_path / "afile").write_text("x")
    assert "is a file, not a folder" in refused(factorized_ckpt, tmp_path / "afile" / "m.pth")
    assert main(["export", str(factorized_ckpt), str(existing), "--force"]) == 0
    assert torch.load(existing, weights_only=True)["g_a.0.weight"].shape[0] == 32
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file, none left behind


def _hints(stdout: str) -> list[str]:
    return re.findall(r"`([^`]+)`", stdout)


def _reference(ckpt: Path, images: Path, crop: int | None = None) -> dict:
    """The checkpoint's own numbers, evaluated in this process (the exported file's go through the CLI)."""
    from compresslab.evaluation.evaluator import list_eval_images
    from compresslab.evaluation.results import evaluate_checkpoint

    return evaluate_checkpoint(str(ckpt), list_eval_images(images), crop=crop).mean


def _evaluate(args: list[str], images: Path, out: Path) -> dict:
    r = run_py([*CLI, "evaluate", *args, "--images", str(images), "--out", str(out)], timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return {k: v[0] for k, v in json.loads(out.read_text())["results"].items()}


@pytest.fixture(scope="module")
def one_crop(kodak_crops, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("one_crop")
    (d / "kodim01.png").symlink_to(kodak_crops / "kodim01.png")
    return d


@pytest.mark.slow
def test_factorized_export_is_compressais_own_model_byte_for_byte(tmp_path, factorized_ckpt, one_crop, capsys):
    from compressai.models import FactorizedPrior
    from PIL import Image
    from torchvision.transforms.functional import to_tensor

    from compresslab.models.from_checkpoint import build_model_from_checkpoint

    out = tmp_path / "model.pth.tar"
    r = run_py([*CLI, "export", str(factorized_ckpt), str(out)], timeout=120)
    assert r.returncode == 0, r.stderr
    # CompressAI's class, loaded as the message says, writes the same bitstream as our checkpoint
    theirs = FactorizedPrior.from_state_dict(torch.load(out, weights_only=True)).eval()
    theirs.update(force=True)
    ours, _ = build_model_from_checkpoint(factorized_ckpt)
    x = to_tensor(Image.open(one_crop / "kodim01.png").convert("RGB"))[None, :, :192, :256]
    with torch.no_grad():
        assert theirs.compress(x)["strings"] == ours.compress(x)["strings"]
    # every command the message prints runs as printed (the image folder filled in) and agrees with the checkpoint
    hints = _hints(r.stdout)
    assert any("eval_model" in h for h in hints) and any(h.startswith("compresslab evaluate") for h in hints)
    ckpt_rd = _reference(factorized_ckpt, one_crop)
    for hint in hints:
        argv = shlex.split(hint.replace("<image folder>", str(one_crop)))
        if argv[0] == "compresslab":
            got = _evaluate(argv[2:], one_crop, tmp_path / "hint.json")
            assert [got[k] for k in ("bpp", "psnr-rgb", "bpp_est")] == [ckpt_rd[k] for k in ("bpp", "psnr-rgb", "bpp_est")]
        else:
            assert argv[:2] == ["python", "-m"]
            ref = run_py(argv[1:], timeout=300)
            assert ref.returncode == 0, ref.stderr[-2000:]
            theirs_rd = json.loads(ref.stdout[ref.stdout.index("{"):])["results"]
            assert theirs_rd["bpp"][0] == ckpt_rd["bpp"]  # factorized: every byte equal
            assert theirs_rd["psnr-rgb"][0] == pytest.approx(ckpt_rd["psnr-rgb"], abs=1e-4)  # float32 vs our float64
    # the plain file says nothing of itself: one line with commands that work, and the wrapped copy needs no flags
    from compresslab.cli import main

    capsys.readouterr()
    assert main(["export", str(out), str(tmp_path / "again.pth")]) == 2
    line = capsys.readouterr().err
    assert "its keys are those of a factorized model" in line and len(line.splitlines()) == 1
    (wrap,) = [h for h in _hints(line) if h.startswith("compresslab export")]
    assert main(shlex.split(wrap)[1:]) == 0
    wrapped = Path(shlex.split(wrap)[3])
    assert torch.load(wrapped, weights_only=True)["compresslab"]["model"] == {"name": "factorized", "N": 32, "M": 48}


def _msp_ckpt(tmp_path_factory, profile: str, sizes: list[str], extra: tuple[str, ...] = ()) -> Path:
    """A 2-step MSP run of ``profile`` on the profile's own minimum crops (debug=smoke: fast/normal 128, extra 256)."""
    d = tmp_path_factory.mktemp(f"msp_{profile}")
    res = train(d, [f"model=msp/{profile}", *sizes, "model.resblocks=1", "data.batch_size=2", "data.val_batch_size=2",
                    "trainer.max_steps=2", "trainer.val_check_interval=2", "trainer.limit_val_batches=1",
                    "data.max_train_images=8", "callbacks.rd_eval.enabled=false", *extra])
    return Path(res["last_ckpt"])


@pytest.fixture(scope="module")
def msp_fast_ckpt(tmp_path_factory) -> Path:
    return _msp_ckpt(tmp_path_factory, "fast", ["model.N=32", "model.M=48", "model.filters=16"])


# normal and extra: their own scales, block and seeds (extra: S=4, 2x4 blocks, K=4, 120 steps) at tiny channel counts,
# one step of one crop without validation (extra's 256 px crops and 120 steps dominate this file's time otherwise)
ONE_STEP = ("data.batch_size=1", "trainer.max_steps=1", "trainer.val_check_interval=1", "trainer.limit_val_batches=0")


@pytest.fixture(scope="module")
def msp_normal_ckpt(tmp_path_factory) -> Path:
    return _msp_ckpt(tmp_path_factory, "normal", ["model.N=16", "model.M=16", "model.filters=8"], ONE_STEP)


@pytest.fixture(scope="module")
def msp_extra_ckpt(tmp_path_factory) -> Path:
    return _msp_ckpt(tmp_path_factory, "extra", ["model.N=16", "model.M=16", "model.filters=8"], ONE_STEP)


@pytest.fixture(scope="module")
def adaptive_ckpt(tmp_path_factory, factorized_ckpt) -> Path:
    d = tmp_path_factory.mktemp("adaptive_export")
    res = train(d, ["model=adaptive", f"model.base_ckpt={factorized_ckpt}", "callbacks.rd_eval.enabled=false",
                    "trainer.max_steps=2", "trainer.val_check_interval=2"])
    return Path(res["last_ckpt"])


@pytest.mark.slow
@pytest.mark.parametrize("fixture,described", [("msp_fast_ckpt", "msp (profile fast, N=32, M=48)"),
                                               ("msp_normal_ckpt", "msp (profile normal, N=16, M=16)"),
                                               ("msp_extra_ckpt", "msp (profile extra, N=16, M=16)"),
                                               ("adaptive_ckpt", "adaptive (N=32, M=48)")])
def test_our_models_export_a_file_evaluate_rebuilds_with_no_flags(request, tmp_path, one_crop, fixture, described,
                                                                  capsys):
    ckpt = request.getfixturevalue(fixture)
    out = tmp_path / "exported.pth"
    r = run_py([*CLI, "export", str(ckpt), str(out)], timeout=120)
    assert r.returncode == 0, r.stderr
    assert described in r.stdout and "--model" not in r.stdout and "--N" not in r.stdout
    header = torch.load(out, weights_only=True)["compresslab"]
    assert header["format"] == "compresslab-weights" and header["lambda"] is not None
    if "profile" in described:  # the profile's own schedule is in the file, not only its name
        from compresslab.models.msp import PROFILES

        profile = PROFILES[header["model"]["profile"]]
        assert f"profile {header['model']['profile']}" in described
        assert [header["model"][k] for k in ("scales", "seeds")] == [profile["scales"], profile["seeds"]]
        assert list(header["model"]["block"]) == list(profile["block"])
    assert header["source"]["run"] == ckpt.parents[1].name and header["versions"]["compressai"]
    assert str(tmp_path) not in json.dumps(header, default=str)  # no machine's folders in a file meant to be shared
    (hint,) = [h for h in _hints(r.stdout) if h.startswith("compresslab evaluate")]
    args = ["--crop", "128"]
    got = _evaluate([*shlex.split(hint)[2:], *args], one_crop, tmp_path / "export.json")
    want = _reference(ckpt, one_crop, crop=128)
    for key in ("bpp", "psnr-rgb", "bpp_est"):
        assert got[key] == want[key], key
    from compresslab.cli import main

    capsys.readouterr()
    assert main(["export", str(ckpt), str(tmp_path / "x.pth"), "--format", "compressai"]) == 2
    line = capsys.readouterr().err
    assert "has no CompressAI class" in line and "--format compresslab" in line and len(line.splitlines()) == 1


@pytest.mark.slow
def test_wrong_architecture_names_missing_groups_with_counts(tmp_path, factorized_ckpt):
    from compresslab.io.checkpoints import CheckpointError

    with pytest.raises(CheckpointError) as e:
        train(tmp_path, ["model=hyperprior", f"init_from={factorized_ckpt}", "callbacks.rd_eval.enabled=false"])
    msg = str(e.value)
    found = re.search(r"missing (\d+) keys under ([^;]*)", msg)
    assert found and int(found.group(1)) > 12, msg
    assert "h_a.*" in found.group(2) and "h_s.*" in found.group(2) and "gaussian_conditional.*" in found.group(2)
    quoted = re.search(r"`(missing \d+ keys under [^`]*)`", (REPO / "docs" / "evaluation.md").read_text())
    assert quoted and quoted.group(1) in msg  # the docs quote this very message


@pytest.mark.slow
def test_a_base_gives_its_sizes_from_its_header_or_its_weights(tmp_path, factorized_ckpt):
    """N/M of a factorized base: from a CompressLab checkpoint's header, or from the shapes of a plain CompressAI
    state dict; prepare_model_config then builds (and the run records) those sizes, not the requested ones."""
    from compresslab.models.base_weights import base_info
    from compresslab.training.run import prepare_model_config

    plain = tmp_path / "plain.pth.tar"
    assert run_py([*CLI, "export", str(factorized_ckpt), str(plain)], timeout=120).returncode == 0
    assert "compresslab" not in torch.load(plain, weights_only=True)
    assert base_info(str(plain)) == {"N": 32, "M": 48, "lambda": None}
    for base in (factorized_ckpt, plain):
        cfg = prepare_model_config({"name": "adaptive", "N": 128, "M": 192, "base_ckpt": str(base)})
        assert (cfg["N"], cfg["M"]) == (32, 48)


def test_help_says_what_export_writes():
    r = run_py([*CLI, "--help"], timeout=60)
    text = " ".join(r.stdout.split())
    assert "export write a model's weights for other tools: CompressAI's state dict for models it has" in text
    assert "else a file that says which model it is (compresslab evaluate takes it with no flags)" in text


# --- every architecture CompressAI's eval_model knows (its zoo table): export -> eval_model vs compresslab evaluate --
# tiny sizes (cheng2020 needs N == M); mbt2018/cheng2020 decode position by position: small images keep that short
# (192x192: eval_model's MS-SSIM needs a side over 160 px; a multiple of 64, so neither tool pads)
ZOO_TINY = {"mbt2018-mean": ["model.N=16", "model.M=16"], "mbt2018": ["model.N=16", "model.M=16"],
            "cheng2020-anchor": ["model.N=16", "model.M=16"], "cheng2020-attn": ["model.N=16", "model.M=16"]}
TINY_FAST = ["trainer.max_steps=2", "trainer.limit_val_batches=0", "callbacks.rd_eval.enabled=false",
             "data.max_train_images=8"]
# the tolerance docs/evaluation.md ("Export: weights in and out") states for the same weights through CompressAI's
# eval_model and `compresslab evaluate`: bpp equal, except mbt2018-mean (our default deterministic_coding takes means
# and scales from a float64 copy of h_s: a symbol can differ at a grid edge) within 1%; PSNR and MS-SSIM differ only
# by float32 (eval_model) vs float64 (ours) arithmetic
BPP_REL = {"mbt2018-mean": 0.01}
PSNR_ABS, MS_SSIM_ABS = 1e-4, 1e-5


@pytest.fixture(scope="module")
def tiny_crops(data_root, tmp_path_factory) -> Path:
    """One 192x192 Kodak crop (no padding: eval_model and ours code the same pixels)."""
    from PIL import Image

    d = tmp_path_factory.mktemp("tiny_crops")
    Image.open(data_root / "kodak" / "kodim23.png").convert("RGB").crop((250, 150, 442, 342)).save(d / "kodim23.png")
    return d


@pytest.mark.slow
@pytest.mark.parametrize("arch", sorted(ZOO_TINY))
def test_export_runs_in_compressais_eval_model_as_compresslab_evaluates_it(tmp_path, tiny_crops, arch, capsys):
    from compresslab.cli import main

    ckpt = Path(train(tmp_path / "run", [f"model={arch}", *ZOO_TINY[arch], *TINY_FAST])["last_ckpt"])
    out = tmp_path / f"{arch}.pth.tar"
    capsys.readouterr()
    assert main(["export", str(ckpt), str(out)]) == 0  # compressai is the default format for these
    hints = _hints(capsys.readouterr().out)
    (theirs_cmd,) = [h for h in hints if "eval_model" in h]
    argv = shlex.split(theirs_cmd.replace("<image folder>", str(tiny_crops)))
    assert argv[:3] == ["python", "-m", "compressai.utils.eval_model"] and f"-a {arch}" in theirs_cmd
    ref = run_py(argv[1:], timeout=300)  # CompressAI's own loader and real bitstreams, in its own process
    assert ref.returncode == 0, ref.stderr[-2000:]
    theirs = json.loads(ref.stdout[ref.stdout.index("{"):])["results"]
    theirs = {k: v[0] if isinstance(v, list) else v for k, v in theirs.items()}
    (ours_cmd,) = [h for h in hints if h.startswith("compresslab evaluate")]
    assert main([*shlex.split(ours_cmd)[1:], "--images", str(tiny_crops), "--out", str(tmp_path / "ours.json"),
                 "--workers", "1"]) == 0
    ours = {k: v[0] for k, v in json.loads((tmp_path / "ours.json").read_text())["results"].items()}
    print(arch, {k: (ours[k], theirs[k]) for k in ("bpp", "psnr-rgb", "ms-ssim-rgb")})
    assert ours["bpp"] == pytest.approx(theirs["bpp"], rel=BPP_REL.get(arch, 0), abs=0)
    assert ours["psnr-rgb"] == pytest.approx(theirs["psnr-rgb"], abs=PSNR_ABS)
    assert ours["ms-ssim-rgb"] == pytest.approx(theirs["ms-ssim-rgb"], abs=MS_SSIM_ABS)
    if arch in ("mbt2018-mean", "cheng2020-anchor"):  # and back: CompressAI's file wrapped into ours, no flags after
        wrapped = tmp_path / "wrapped.pth"
        assert main(["export", str(out), str(wrapped), "--model", arch, "--format", "compresslab"]) == 0
        assert main(["evaluate", str(wrapped), "--images", str(tiny_crops), "--out", str(tmp_path / "wrapped.json"),
                     "--workers", "1"]) == 0
        again = {k: v[0] for k, v in json.loads((tmp_path / "wrapped.json").read_text())["results"].items()}
        assert [again[k] for k in ("bpp", "psnr-rgb")] == [ours[k] for k in ("bpp", "psnr-rgb")]


def test_the_docs_state_the_tolerance_the_eval_model_test_uses():
    text = " ".join((REPO / "docs" / "evaluation.md").read_text().split())
    assert BPP_REL == {"mbt2018-mean": 0.01} and "`mbt2018-mean` within **1 % relative**" in text
    assert (PSNR_ABS, MS_SSIM_ABS) == (1e-4, 1e-5) and "PSNR within **1e-4 dB** and MS-SSIM within **1e-5**" in text
    assert "bpp **equal** (same payload bytes)" in text


# CompressAI classes outside the table eval_model loads from (compressai.zoo.image.model_architectures)
NOT_IN_EVAL_MODEL = {"elic2022-official": {"N": 16, "M": 32, "groups": [8, 8, 16]},
                     "elic2022-chandelier": {"N": 16, "M": 32, "groups": [8, 8, 16]},
                     "cheng2020-anchor-checkerboard": {"N": 16, "M": 16},
                     "bmshj2018-factorized-relu": {"N": 16, "M": 16}}


@pytest.mark.parametrize("arch", sorted(NOT_IN_EVAL_MODEL))
def test_compressai_format_is_refused_in_one_line_where_eval_model_cannot_load_it(tmp_path, arch, capsys):
    from compresslab import models
    from compresslab.cli import main
    from compresslab.io.checkpoints import atomic_torch_save

    cfg = {"name": arch, **NOT_IN_EVAL_MODEL[arch]}
    model = models.build(cfg)
    ckpt = tmp_path / "tiny.ckpt"  # the two parts of a training checkpoint export reads
    atomic_torch_save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                       "compresslab": {"model": cfg}}, ckpt)
    capsys.readouterr()
    assert main(["export", str(ckpt), str(tmp_path / "x.pth.tar"), "--format", "compressai"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not in the architecture table CompressAI's eval_model loads from" in err[0], err
    assert "--format compresslab" in err[0] and not (tmp_path / "x.pth.tar").exists()
    assert main(["export", str(ckpt), str(tmp_path / "ours.pth")]) == 0  # the default: our self-describing file
    assert torch.load(tmp_path / "ours.pth", weights_only=True)["compresslab"]["model"]["name"] == arch
