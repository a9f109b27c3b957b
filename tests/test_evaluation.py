import json
import random

import pytest
import torch
from PIL import Image

from compresslab import models
from compresslab.io.checkpoints import CheckpointError
from compresslab.models.from_checkpoint import build_model_from_checkpoint
from compresslab.data.images import DataLayoutError
from compresslab.rd.anchors import AnchorError, list_anchors, load_anchor
from compresslab.rd.bdrate import bd_rate, monotone_points, rate_change_at_equal_quality
from compresslab.bitstream.codec import compress_file, decompress_file
from compresslab.bitstream.container import ContainerError
from compresslab.evaluation.evaluator import CodecMismatchError, evaluate_model, list_eval_images
from conftest import assert_decodes_identically_elsewhere, run_py

GOLDEN = {  # CompressAI's Kodak result files vs vtm.json: cubic / pchip / akima (issue #3)
    "compressai-bmshj2018-factorized_mse_cpu": (67.81, 68.10, 68.01),
    "compressai-bmshj2018-hyperprior_mse_cpu": (30.14, 30.49, 30.47),
    "compressai-mbt2018-mean_mse_cpu": (21.03, 21.28, 21.28),
    "hm": (23.39, 23.31, 23.30),
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_bd_rates_vs_vtm(name):
    vtm = load_anchor("kodak/vtm")
    test = load_anchor(f"kodak/{name}")
    for method, expected in zip(("cubic", "pchip", "akima"), GOLDEN[name]):
        res = bd_rate(*vtm.curve(), *test.curve(), method=method)
        assert res.available and abs(res.bd_rate - expected) <= 0.05, (method, res)


def test_bd_rate_sanity_and_unavailable_cases():
    vtm = load_anchor("kodak/vtm")
    r, q = vtm.curve()
    same = bd_rate(r, q, r, q)
    assert abs(same.bd_rate) < 1e-9 and same.anchor_points_in_overlap == len(r)
    # our first CPU curves' band (26.0-27.8 dB) holds one VTM point: refused, with the fix named
    band = bd_rate(r, q, [0.05, 0.07, 0.09, 0.11], [26.0, 26.6, 27.2, 27.8])
    assert not band.available and band.anchor_points_in_overlap == 1 and "1 anchor point(s) (< 2 each)" in band.reason
    assert "lambda ladder" in band.reason and band.coverage > 0.9  # refused for its support, not its coverage
    # the same curve reaching past VTM's second point (28.49 dB) is a comparison of data
    two = bd_rate(r, q, [0.05, 0.07, 0.09, 0.11, 0.14], [26.0, 26.6, 27.2, 27.8, 28.6])
    assert two.available and two.anchor_points_in_overlap == 2 and "holding 4 test and 2 anchor point(s)" in two.line()
    assert bd_rate(r, q, [0.05, 0.07, 0.09, 0.11], [26.0, 26.6, 27.2, 27.8], min_points_in_band=1).available
    # a test curve mostly above the anchor's top: 2 points each in the band, but under half the curve is compared
    tail = bd_rate(r[:4], q[:4], [0.3, 0.45, 0.7, 1.0, 1.4, 2.0], [31.0, 33.0, 35.0, 37.0, 39.0, 41.0])
    assert not tail.available and "covers 40 % of the narrower curve (< 50 %)" in tail.reason
    assert abs(bd_rate(r, q, [0.9 * v for v in r], q).bd_rate - (-10.0)) < 1e-6
    few = bd_rate(r, q, r[:3], q[:3])
    assert not few.available and "at least 4" in few.reason and "unavailable" in few.line()
    apart = bd_rate(r, q, [0.01, 0.02, 0.03, 0.04], [10, 11, 12, 13])
    assert not apart.available and "do not overlap" in apart.reason
    rates, quals, dropped = monotone_points([0.4, 0.1, 0.2, 0.3], [30, 25, 24, 29])
    assert list(rates) == [0.1, 0.3, 0.4] and dropped == 1
    # an early outlier must not evict the good points after it (a greedy scan kept only the outlier)
    rates, quals, dropped = monotone_points([0.1, 0.2, 0.3, 0.4, 0.5], [30, 25, 26, 27, 28])
    assert list(rates) == [0.2, 0.3, 0.4, 0.5] and list(quals) == [25, 26, 27, 28] and dropped == 1
    with pytest.raises(ValueError, match="unknown BD method"):
        bd_rate(r, q, r, q, method="linear")


def test_single_point_rate_change_vs_vtm():
    vtm = load_anchor("kodak/vtm")
    r, q = vtm.curve()
    assert abs(rate_change_at_equal_quality(r, q, r[3], q[3])) < 1e-9
    assert abs(rate_change_at_equal_quality(r, q, 1.5 * r[3], q[3]) - 50) < 1e-6
    assert rate_change_at_equal_quality(r, q, 0.1, 5.0) is None


def test_anchor_registry_metadata_and_refusals():
    names = list_anchors()
    assert "kodak/vtm" in names and "kodak/hm" in names
    assert not any("8bit-decoded" in n and "ms-ssim" in n.split("/")[-1] for n in names)
    vtm = load_anchor("kodak/vtm")
    assert "VTM 9.1 or 8.2" in vtm.meta["version"] and "4:4:4" in vtm.meta["colour_space"]
    assert "converted input" in vtm.meta["psnr"] and "869a9f5d" in vtm.meta["source"]
    bad = [n for n in list_anchors(include_unusable=True) if "8bit-decoded" in n and "ms-ssim" in n][0]
    with pytest.raises(AnchorError, match="not usable"):
        load_anchor(bad)
    with pytest.raises(AnchorError, match="unknown anchor"):
        load_anchor("kodak/vvc-nope")


@pytest.mark.slow
def test_cli_bd_rate_line(data_root):
    r = run_py(["-m", "compresslab.cli", "bd-rate", "kodak/vtm", str(data_root / "anchors/kodak/hm.json"),
                "--method", "pchip"], timeout=120)
    assert r.returncode == 0, r.stderr
    assert "BD-rate +23.31 %" in r.stdout and "pchip" in r.stdout and "overlap" in r.stdout


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.slow
def test_plain_state_dicts_give_their_size_and_msp_export_says_how_to_load(tmp_path, factorized_ckpt, capsys):
    """N/M of a plain state dict come from its weights; a model CompressAI lacks is not sent to CompressAI."""
    from compresslab.cli import main

    plain_sd = tmp_path / "plain.pth"
    assert main(["export", str(factorized_ckpt), str(plain_sd)]) == 0
    model, meta = build_model_from_checkpoint(plain_sd, {"name": "factorized"})
    assert (meta["model"]["N"], meta["model"]["M"]) == (32, 48)
    msp = models.build({"name": "msp", "N": 32, "M": 48})
    from compresslab.io.checkpoints import atomic_torch_save

    atomic_torch_save(msp.state_dict(), tmp_path / "msp.pth")
    _, meta = build_model_from_checkpoint(tmp_path / "msp.pth", {"name": "msp"})
    assert (meta["model"]["N"], meta["model"]["M"]) == (32, 48)
    atomic_torch_save({"state_dict": {f"model.{k}": v for k, v in msp.state_dict().items()},
                       "compresslab": {"model": {"name": "msp", "N": 32, "M": 48}}}, tmp_path / "msp.ckpt")
    capsys.readouterr()
    assert main(["export", str(tmp_path / "msp.ckpt"), str(tmp_path / "msp_out.pth")]) == 0
    out = capsys.readouterr().out
    assert "msp (profile normal, N=32, M=48)" in out and "`compresslab evaluate " in out and "--model" not in out
    assert "compressai.models" not in out  # the file is ours (header + weights): tests/test_export.py


@pytest.mark.slow
@pytest.mark.parametrize("fixture,arch", [("factorized_ckpt", "bmshj2018-factorized"),
                                          ("hyperprior_ckpt", "bmshj2018-hyperprior")])
def test_evaluator_agrees_with_compressai_eval_model(request, tmp_path, kodak_crops, fixture, arch):
    ckpt = request.getfixturevalue(fixture)
    exported = tmp_path / "model.pth.tar"
    r = run_py(["-m", "compresslab.cli", "export", str(ckpt), str(exported)], timeout=120)
    assert r.returncode == 0, r.stderr
    cls = {"bmshj2018-factorized": "FactorizedPrior", "bmshj2018-hyperprior": "ScaleHyperprior"}[arch]
    assert f"compressai.models.{cls}.from_state_dict" in r.stdout and f"-a {arch}" in r.stdout  # the message is true
    assert exported.stat().st_mode & 0o777 == 0o666 & ~_umask()  # a normal file, not mkstemp's 0600
    ref = run_py(["-m", "compressai.utils.eval_model", "checkpoint", str(kodak_crops), "-a", arch, "-p",
                  str(exported)], timeout=300)
    assert ref.returncode == 0, ref.stderr[-2000:]
    theirs = {k: v[0] if isinstance(v, list) else v
              for k, v in json.loads(ref.stdout[ref.stdout.index("{"):])["results"].items()}
    model, _ = build_model_from_checkpoint(ckpt)
    ours = evaluate_model(model, list_eval_images(kodak_crops))["mean"]
    assert abs(ours["bpp"] - theirs["bpp"]) < 1e-3
    assert abs(ours["psnr-rgb"] - theirs["psnr-rgb"]) < 1e-2
    assert abs(ours["ms-ssim-rgb"] - theirs["ms-ssim-rgb"]) < 1e-4
    assert 0.95 < ours["bpp_ratio"] < 1.2  # real bitstream close to the likelihood estimate


@pytest.mark.slow
def test_decoder_latent_mismatch_fails_loudly(factorized_ckpt, kodak_crops, monkeypatch):
    model, _ = build_model_from_checkpoint(factorized_ckpt)
    real = type(model).decompress

    def off_by_one(self, strings, shape):
        out = real(self, strings, shape)
        out["latents"]["y"] = out["latents"]["y"].clone()
        out["latents"]["y"][0, 0, 0, 0] += 1
        return out

    monkeypatch.setattr(type(model), "decompress", off_by_one)
    with pytest.raises(CodecMismatchError, match="differs from the encoder"):
        evaluate_model(model, list_eval_images(kodak_crops, 1))


def test_missing_kodak_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(DataLayoutError, match="fetch kodak"):
        list_eval_images(tmp_path / "kodak")


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["factorized_ckpt", "hyperprior_ckpt"])
def test_compress_then_decode_in_another_process_is_exact(data_root, request, tmp_path, fixture):
    ckpt = request.getfixturevalue(fixture)
    img = Image.open(data_root / "kodak" / "kodim23.png").convert("RGB").crop((0, 0, 200, 136))  # not multiples of 64
    src = tmp_path / "in.png"
    img.save(src)
    compress_file(ckpt, src, tmp_path / "x.clab")
    here = decompress_file(tmp_path / "x.clab", ckpt)
    assert here.size == (200, 136)  # cropped back to the original size
    assert_decodes_identically_elsewhere(tmp_path / "x.clab", ckpt, here, tmp_path)


@pytest.mark.slow
def test_mutated_files_are_refused_never_crash(data_root, tmp_path, factorized_ckpt, hyperprior_ckpt):
    src = tmp_path / "in.png"
    Image.open(data_root / "kodak" / "kodim05.png").convert("RGB").crop((0, 0, 128, 128)).save(src)
    compress_file(factorized_ckpt, src, tmp_path / "ok.clab")
    good = (tmp_path / "ok.clab").read_bytes()
    rng = random.Random(0)
    variants = [good[:n] for n in sorted(rng.sample(range(len(good)), 40))]            # truncations
    for _ in range(80):                                                                 # bit flips
        b = bytearray(good)
        for _ in range(rng.randint(1, 3)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        variants.append(bytes(b))
    variants += [b"", b"\x89PNG\r\n\x1a\n" + good[8:], src.read_bytes(), good + b"extra", bytes(len(good))]
    for i, data in enumerate(variants):
        f = tmp_path / f"bad{i}.clab"
        f.write_bytes(data)
        with pytest.raises(ContainerError):
            decompress_file(f, factorized_ckpt)
    # the right architecture with other weights, and another architecture, are refused by name/hash
    other = tmp_path / "other.ckpt"
    ck = torch.load(factorized_ckpt, weights_only=True)
    ck["state_dict"]["model.g_s.0.weight"] = ck["state_dict"]["model.g_s.0.weight"] * 1.01
    torch.save(ck, other)
    with pytest.raises(CheckpointError, match="needs weights"):
        decompress_file(tmp_path / "ok.clab", other)
    with pytest.raises(CheckpointError, match="encoded with model 'factorized'"):
        decompress_file(tmp_path / "ok.clab", hyperprior_ckpt)
    assert decompress_file(tmp_path / "ok.clab", factorized_ckpt).size == (128, 128)


@pytest.mark.slow
def test_smoke_multirun_ends_with_curve_table_plot_and_wandb_report(tmp_path):
    r = run_py(["train.py", "-m", "model=hyperprior", "lambda=0.0018,0.0035,0.0067,0.013", "debug=smoke",
                "trainer.max_steps=2", "trainer.val_check_interval=2", "callbacks.rd_eval.max_images=1",
                "callbacks.rich_progress.enabled=false", f"hydra.sweep.dir={tmp_path}/sweep"], timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    sweep = tmp_path / "sweep"
    rd_files = sorted(sweep.glob("*/rd.json"))
    assert len(rd_files) == 4
    meta = json.loads(rd_files[0].read_text())["meta"]
    assert meta["model"]["name"] == "hyperprior" and meta["lambda"] == 0.0018 and len(meta["config_hash"]) == 12
    out = sweep / "rd_summary"
    for f in ("rd_table.md", "rd_table.csv", "rd.png", "summary.json"):
        assert (out / f).is_file()
    assert "BD-rate" in r.stdout + r.stderr
    assert list((out / "wandb").glob("offline-run-*")), "no W&B report run"
    table = (out / "rd_table.md").read_text()
    assert "hyperprior" in table and "akima" in table


@pytest.mark.slow
def test_a_failed_sweep_job_costs_only_its_own_point(tmp_path):
    """Hydra's basic sweeper re-raises a failed job after the batch and skips on_multirun_end; the summary of the
    finished jobs must exist anyway and name the failure with its error line."""
    sweep = tmp_path / "sweep"
    r = run_py(["train.py", "-m", "model=factorized", "lambda=0.0067,-1.0", "debug=smoke", "trainer.max_steps=2",
                "trainer.val_check_interval=2", "callbacks.rd_eval.max_images=1", "logger=csv",
                f"hydra.sweep.dir={sweep}"], timeout=300)
    assert r.returncode != 0  # the sweep still reports that something failed
    assert len(list(sweep.glob("*/rd.json"))) == 1
    table = (sweep / "rd_summary" / "rd_table.md").read_text()
    assert "factorized" in table
    failed = (sweep / "rd_summary" / "failed_jobs.md").read_text()
    assert "lambda=-1.0" in failed and "must be a positive number" in failed
    assert "failed job(s)" in r.stdout


@pytest.mark.slow
def test_cli_evaluate_anchors_and_rd(tmp_path, factorized_ckpt, kodak_crops, capsys):
    from compresslab.cli import main

    out = tmp_path / "eval.json"
    assert main(["evaluate", str(factorized_ckpt), "--images", str(kodak_crops), "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    for key in ("bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time"):
        assert len(doc["results"][key]) == 1
    assert len(doc["per_image"]) == 2 and doc["meta"]["model"]["name"] == "factorized"

    assert main(["anchors", "--dataset", "kodak", "-v"]) == 0
    listing = capsys.readouterr().out
    assert "kodak/vtm" in listing and "VTM 9.1 or 8.2" in listing

    for i, lmbda in enumerate((0.1, 0.2, 0.3, 0.4)):  # a synthetic 4-point curve from VTM's own points
        vtm = load_anchor("kodak/vtm")
        run = tmp_path / "runs" / str(i)
        run.mkdir(parents=True)
        (run / "rd.json").write_text(json.dumps({"name": "x", "results": {
            "bpp": [vtm.results["bpp"][i + 2] * 1.2], "psnr-rgb": [vtm.results["psnr-rgb"][i + 2]]},
            "meta": {"model": {"name": "synthetic"}, "lambda": lmbda}}))
    assert main(["rd", str(tmp_path / "runs"), "--out", str(tmp_path / "rd"), "--method", "pchip"]) == 0
    table = (tmp_path / "rd" / "rd_table.md").read_text()
    assert "synthetic" in table and "pchip" in table
    summary = json.loads((tmp_path / "rd" / "summary.json").read_text())
    assert abs(summary["rows"][0]["bd_rate_vs_kodak/vtm"] - 20.0) < 0.5  # 1.2x VTM's rate on its own points
    assert main(["rd", str(tmp_path / "runs")]) == 0  # no --out: beside the runs, not ./outputs/rd
    assert (tmp_path / "runs" / "rd_summary" / "rd_table.md").exists()
    assert main(["evaluate", str(tmp_path / "nope.ckpt")]) == 2  # a clear error, not a traceback
    assert "does not exist" in capsys.readouterr().err
    # --data NAME: a named evaluation set under the data root, recorded in the result
    (tmp_path / "root" / "tecnick").mkdir(parents=True)
    for f in sorted(kodak_crops.iterdir())[:1]:
        (tmp_path / "root" / "tecnick" / f.name).write_bytes(f.read_bytes())
    out = tmp_path / "tecnick.json"
    assert main(["evaluate", str(factorized_ckpt), "--data", "tecnick", "--data-root", str(tmp_path / "root"),
                 "--out", str(out)]) == 0
    assert json.loads(out.read_text())["meta"]["dataset"] == "tecnick" and len(json.loads(out.read_text())["per_image"]) == 1
    assert main(["evaluate", str(factorized_ckpt), "--data", "clic2020-mobile", "--data-root", str(tmp_path / "root")]) == 2
    assert "evaluation set 'clic2020-mobile' not found" in capsys.readouterr().err


def test_mean_rd_cost_matches_compressai_rate_distortion_loss():
    from compressai.losses import RateDistortionLoss

    from compresslab.evaluation.metrics import mean_rd_cost, psnr_8bit

    torch.manual_seed(0)
    lmbda, per_image, losses = 0.0483, [], []
    for _ in range(3):
        x = torch.randint(0, 256, (1, 3, 32, 48)) / 255.0  # on the 8-bit grid, so PSNR's rounding is exact
        x_hat = ((x * 255 + torch.randint(-6, 7, x.shape)).clamp(0, 255)) / 255.0
        lik = torch.rand(1, 8, 2, 3) * 0.9 + 0.05
        out = RateDistortionLoss(lmbda=lmbda)({"x_hat": x_hat, "likelihoods": {"y": lik}}, x)
        per_image.append({"bpp": float(out["bpp_loss"]), "psnr-rgb": psnr_8bit(x, x_hat)})
        losses.append(float(out["loss"]))
    assert abs(mean_rd_cost(per_image, lmbda) - sum(losses) / 3) < 1e-4 * abs(sum(losses) / 3)


def test_rd_reads_every_point_of_multi_point_result_files(data_root, tmp_path):
    """CompressAI's eval_model output and the published curves hold one point per quality: `rd` must read them all
    (it once read only the first and printed "points 1") and give the same BD-rate as the anchor registry."""
    from compresslab.cli import main

    name = "compressai-bmshj2018-factorized_mse_cpu"
    src = data_root / "anchors" / "kodak" / f"{name}.json"
    n = len(json.loads(src.read_text())["results"]["bpp"])
    assert n >= 6
    assert main(["rd", str(src), "--out", str(tmp_path / "rd"), "--method", "akima"]) == 0
    row = json.loads((tmp_path / "rd" / "summary.json").read_text())["rows"][0]
    assert row["points"] == n and row["points_used"] == n  # the zoo curve is monotone
    assert abs(row["bd_rate_vs_kodak/vtm"] - GOLDEN[name][2]) <= 0.05
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"results": {"psnr-rgb": [30.0]}}))
    assert main(["rd", str(bad), "--out", str(tmp_path / "rd2")]) == 2


def test_means_say_what_they_excluded():
    from compresslab.evaluation.evaluator import mean_rows

    with pytest.warns(RuntimeWarning, match="psnr-rgb: 1 of 3 images excluded"):
        m = mean_rows([{"bpp": 1.0, "psnr-rgb": 30.0}, {"bpp": 2.0, "psnr-rgb": float("inf")},
                       {"bpp": 3.0, "psnr-rgb": 32.0}])
    assert m == {"bpp": 2.0, "psnr-rgb": 31.0}


def test_rd_and_bd_rate_agree_on_two_multi_point_files_in_any_metric(tmp_path, capsys):
    """Two 8-point CompressAI result files (copies of the VTM and HM anchors, read as plain files): `rd` keeps all 8
    points per curve and its pairwise BD-rate equals `bd-rate` on the same two files, in PSNR and in MS-SSIM dB
    (derived from ms-ssim-rgb, which the files hold)."""
    from compresslab.cli import main

    files = {}
    for name in ("vtm", "hm"):
        doc = json.loads(load_anchor(f"kodak/{name}").path.read_text())
        doc["name"] = f"{name}-file"
        files[name] = tmp_path / f"{name}.json"
        files[name].write_text(json.dumps(doc))
    for metric in ("psnr-rgb", "ms-ssim-db-rgb"):
        out = tmp_path / f"rd-{metric}"
        assert main(["rd", str(files["vtm"]), str(files["hm"]), "--reference", "vtm-file", "--metric", metric,
                     "--out", str(out)]) == 0
        summary = json.loads((out / "summary.json").read_text())
        assert {c: len(p) for c, p in summary["curves"].items()} == {"vtm-file": 8, "hm-file": 8}
        row = next(r for r in summary["rows"] if r["curve"] == "hm-file")
        capsys.readouterr()
        assert main(["bd-rate", str(files["vtm"]), str(files["hm"]), "--metric", metric]) == 0
        line = capsys.readouterr().out
        assert f"BD-rate {row['bd_rate_vs_vtm-file']:+.2f} %" in line, (line, row)
        assert row["bd_rate_vs_vtm-file"] > 0  # HM needs more bits than VTM, in either metric


def test_sweep_summaries_use_the_losss_metric():
    from compresslab.sweeps.hydra_callbacks import summary_metric
    from conftest import compose

    assert summary_metric(compose([])) == "psnr-rgb"
    assert summary_metric(compose(["loss=msssim"])) == "ms-ssim-db-rgb"


def test_figures_follow_the_anchors_dataset_and_pair_lof_curves(tmp_path):
    from compresslab.rd.curves import context_anchors, dataset_title, plot_curves

    assert dataset_title("clic2020-mobile/vtm") == "CLIC 2020 mobile" and dataset_title("kodak/vtm") == "Kodak"
    assert context_anchors("clic2020-professional/vtm")[0] == "clic2020-professional/vtm"
    assert all(a.startswith("kodak/") for a in context_anchors("kodak/vtm"))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [{"bpp": b, "psnr-rgb": q} for b, q in ((0.2, 27.0), (0.4, 29.0))]
    lof = [{"bpp": b, "psnr-rgb": q + 0.5} for b, q in ((0.2, 27.0), (0.4, 29.0))]
    captured = {}
    real_close = plt.close
    plt.close = lambda fig=None: captured.setdefault("fig", fig)
    try:
        plot_curves({"factorized": pts, "factorized +LOF": lof, "msp": pts}, tmp_path / "x.png", context=())
    finally:
        plt.close = real_close
    lines = {ln.get_label(): ln for ln in captured["fig"].axes[0].get_lines()}
    assert lines["factorized +LOF"].get_color() == lines["factorized"].get_color()  # a pair shares a colour
    assert lines["factorized +LOF"].get_linestyle() == "--" and lines["msp"].get_color() != lines["factorized"].get_color()


def test_rd_reference_may_name_a_file_given(tmp_path, capsys):
    """`compresslab rd a.json b.json --reference a` (the docs' example): the reference is the file a.json's curve;
    an unknown reference is one line naming the curves, not a KeyError traceback."""
    from compresslab.cli import main

    def curve(name, scale):
        bpp = [0.2, 0.4, 0.7, 1.1]
        return {"name": name, "results": {"bpp": [b * scale for b in bpp], "psnr-rgb": [27.0, 29.5, 32.0, 34.5]}}

    (tmp_path / "a.json").write_text(json.dumps(curve("theirs", 1.0)))
    (tmp_path / "b.json").write_text(json.dumps(curve("ours", 0.9)))
    assert main(["rd", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--reference", "a",
                 "--out", str(tmp_path / "out")]) == 0
    rows = {r["curve"]: r for r in json.loads((tmp_path / "out" / "summary.json").read_text())["rows"]}
    from bjontegaard import bd_rate as raw

    expected = raw([0.2, 0.4, 0.7, 1.1], [27.0, 29.5, 32.0, 34.5], [0.18, 0.36, 0.63, 0.99],
                   [27.0, 29.5, 32.0, 34.5], method="akima", require_matching_points=False)
    assert abs(rows["ours"]["bd_rate_vs_a"] - expected) < 1e-6 and "bd_rate_vs_a" not in rows["theirs"]
    capsys.readouterr()
    assert main(["rd", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--reference", "c",
                 "--out", str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "reference 'c' is neither a curve (ours, theirs)" in err[0], err
