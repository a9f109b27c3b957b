"""Reproduce Ulhaq & Bajić 2024 (adaptive encoding distributions) on Kodak, with real bitstreams.

    python -m compresslab.drivers.adaptive_repro --profile cpu_proxy            # about an hour on 2 CPU cores
    python -m compresslab.drivers.adaptive_repro --profile cpu_proxy --base-sweep outputs/rd_cpu_proxy/factorized/sweep \
        --hyperprior-sweep outputs/rd_cpu_proxy/hyperprior/sweep          # reuse trained bases
    python -m compresslab.drivers.adaptive_repro --profile zoo                    # CompressAI's pretrained bases, CPU stage 2
    python -m compresslab.drivers.adaptive_repro --profile paper                  # the same bases, the paper's stage 2 (GPU)

Steps: (1) the factorized bases: a trained sweep (cpu_proxy: compresslab.drivers.pipeline rd_cpu_proxy, or --base-sweep), or
CompressAI's pretrained models q1-8 evaluated here (zoo, paper: `zoo:bmshj2018-factorized/mse/<q>`, the paper's
bases), (2) the hyperprior for context (cpu_proxy), (3) the static control fitted on training crops (zoo, paper;
cpu_proxy takes --static-dir; the leave-one-out control: --static-loo-dir), (4) stage 2 per base (train.py experiment=adaptive_<profile> model.base_ckpt=...; zoo and paper with
the paper's (Nq, Mq, B) per quality from conf/reproduce/ulhaq2024.yaml), which ends with a real-bitstream Kodak
evaluation, (5) the ideal bound (p_hat = p, zero side bits) per base, (6) RD plot, BD-rate table (adaptive, ideal
and static vs base; all vs VTM), side-info bits per image, complexity table. Every finished step is skipped on a
rerun, so a killed reproduction resumes.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

from compresslab.conf import CONF_DIR
from compresslab.io.outdirs import add_output_args, output_dir

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path.cwd()  # work and results folders are relative to where the command runs (a clone or any folder)

from compresslab import models
from compresslab.models.from_checkpoint import build_model_from_checkpoint
from compresslab.data.root import resolve_data_root
from compresslab.rd.curves import summarize_runs
from compresslab.evaluation.evaluator import list_eval_images
from compresslab.evaluation.results import RDMeta, RDResult, evaluate, evaluate_checkpoint

PROFILES = {
    # bases from compresslab.drivers.pipeline rd_cpu_proxy (its YAML ladder; warm start + per-lambda training)
    "cpu_proxy": {"base": None, "stage2": "adaptive_cpu_proxy"},
    # the paper's bases: CompressAI's pretrained factorized models, per quality as in conf/reproduce/ulhaq2024.yaml
    "zoo": {"base": "zoo:bmshj2018-factorized/mse", "stage2": "adaptive_zoo"},
    "paper": {"base": "zoo:bmshj2018-factorized/mse", "stage2": "adaptive_paper"},
}
QUALITIES = CONF_DIR / "reproduce" / "ulhaq2024.yaml"


def quality_table(path: Path = QUALITIES) -> list[dict]:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(path))["qualities"]


def sh(args: list[str]) -> None:
    print("$", " ".join(args), flush=True)
    subprocess.run(args, cwd=ROOT, check=True)


def trained_sweep(model: str, work: Path) -> Path:
    """The CPU recipe's sweep of ``model`` (conf/pipeline/rd_cpu_proxy.yaml trains it unless it is there)."""
    out = work / "rd" / model / "sweep"
    if not list(out.glob("*/rd.json")):
        sh([sys.executable, "-m", "compresslab.drivers.pipeline", "rd_cpu_proxy", "--queues", model, "--work",
            str(work / "rd"), "--out", str(work / "rd" / "summary")])
    return out


def zoo_bases(prefix: str, qualities: list[dict], work: Path, max_images: int | None, crop: int | None) -> Path:
    """One run folder per pretrained base, <work>/bases/q<q>/rd.json, its Kodak point measured here with real
    bitstreams; meta.checkpoint holds the zoo spec that every later step loads (no copy of the weights is made)."""
    root = work / "bases"
    files = list_eval_images(resolve_data_root() / "kodak", max_images)
    for q in qualities:
        spec, out = f"{prefix}/{q['quality']}", root / f"q{q['quality']}"
        if (out / "rd.json").exists():
            continue
        # meta.extra["source"]: the zoo file's URL and SHA-256
        rd = evaluate_checkpoint(spec, files, crop=crop, lmbda=q["lambda"], dataset="kodak", quality=q["quality"],
                                 bins=q["bins"])
        rd.description = f"CompressAI pretrained {spec} (frozen base)"
        rd.write(out / "rd.json")
        print(f"q{q['quality']} {spec}: {rd.mean['bpp']:.4f} bpp, {rd.mean['psnr-rgb']:.2f} dB", flush=True)
    return root


def runs_by_lambda(sweep_dir: Path, model: str | None = None) -> dict[float, Path]:
    """λ -> run folder of every rd.json under ``sweep_dir``; ``model``: only that model's (a published folder such as
    experiments/rd_cpu_ctx/runs holds several)."""
    out = {}
    for rd in sweep_dir.glob("*/rd.json"):
        meta = RDResult.read(rd).meta
        if model is None or meta.model.get("name") == model:
            out[float(meta.lmbda)] = rd.parent
    return out


def base_checkpoint(run: Path) -> str:
    """What a base run's weights are loaded from: its zoo spec, or the checkpoint the training run wrote."""
    return RDResult.read(run / "rd.json").meta.checkpoint or str(run / "checkpoints" / "last.ckpt")


def evaluate_ideal(base_ckpt: str, out_dir: Path, lmbda: float, like: dict) -> None:
    """The ideal bound on the same images (count, crop) as the base run's evaluation ``like``."""
    if (out_dir / "rd.json").exists():
        return
    model = models.build({"name": "adaptive", "base_ckpt": str(base_ckpt), "ideal": True,
                          **_base_size(base_ckpt)})
    files = list_eval_images(resolve_data_root() / "kodak", like.get("images"))
    meta = RDMeta(model={"name": "adaptive-ideal"}, lmbda=lmbda, dataset="kodak", crop=like.get("crop"),
                  recipe="adaptive_repro", extra={"base_ckpt": str(base_ckpt)})
    evaluate(model, files, meta, description="ideal bound: p_hat = p, zero side-info bits").write(out_dir / "rd.json")


def _base_size(ckpt: Path) -> dict:
    from compresslab.models.base_weights import base_size_from_checkpoint

    return base_size_from_checkpoint(str(ckpt))


def macs_and_params(module: torch.nn.Module, x: torch.Tensor) -> tuple[float, int]:
    with FlopCounterMode(display=False) as fc:
        module(x)
    return fc.get_total_flops() / 2, sum(p.numel() for p in module.parameters())


def complexity_table(adaptive_ckpt: Path, hyper_model: dict | None, out: Path) -> list[dict]:
    """Params and MACs/pixel for a 768x512 image (latent 48x32), counted with torch.utils.flop_counter;
    ``hyper_model``: the context hyperprior's {name, N, M} (from its rd.json: the count needs no weights)."""
    pixels = 768 * 512
    rows = []
    model, _ = build_model_from_checkpoint(adaptive_ckpt, update=False)
    p = torch.rand(1, model.M, model.bins).softmax(-1)
    q = model.pdf.analysis(p)
    for name, mod, x in (("h_a,q", model.pdf.h_a, p * model.bins), ("h_s,q", model.pdf.h_s, q)):
        macs, params = macs_and_params(mod, x)
        rows.append({"model": f"adaptive (M={model.M}, B={model.bins})", "transform": name, "params": params,
                     "MACs/pixel": macs / pixels})
    configs = [("hyperprior (128,192)", {"name": "hyperprior", "N": 128, "M": 192}),
               ("hyperprior (192,320)", {"name": "hyperprior", "N": 192, "M": 320})]
    if hyper_model:
        configs.insert(0, (f"hyperprior ({hyper_model['N']},{hyper_model['M']}) [proxy]",
                           {"name": "hyperprior", "N": int(hyper_model["N"]), "M": int(hyper_model["M"])}))
    for label, cfg in configs:
        hp = models.build(cfg).eval()
        y = torch.rand(1, cfg["M"], 32, 48)
        z = hp.h_a(y)
        for name, mod, x in (("h_a", hp.h_a, y), ("h_s", hp.h_s, z)):
            macs, params = macs_and_params(mod, x)
            rows.append({"model": label, "transform": name, "params": params, "MACs/pixel": macs / pixels})
    for cfg_m, bins, nq, mq in ((192, 256, 32, 16), (320, 1024, 64, 32)):
        paper = models.build({"name": "adaptive", "N": 128, "M": cfg_m, "bins": bins, "Nq": nq, "Mq": mq})
        pp = torch.rand(1, cfg_m, bins).softmax(-1)
        qq = paper.pdf.analysis(pp)
        for name, mod, x in (("h_a,q", paper.pdf.h_a, pp * bins), ("h_s,q", paper.pdf.h_s, qq)):
            macs, params = macs_and_params(mod, x)
            rows.append({"model": f"adaptive paper config ({cfg_m},{nq},{mq},15,8,{bins})", "transform": name,
                         "params": params, "MACs/pixel": macs / pixels})
    lines = ["| model | transform | params | MACs/pixel (768x512) |", "|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['transform']} | {r['params']:,} | {r['MACs/pixel']:.1f} |" for r in rows]
    (out / "complexity.md").write_text("\n".join(lines) + "\n")
    return rows


def side_info_table(stage2: dict[float, Path], out: Path) -> None:
    with (out / "side_info_bits.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["lambda", "image", "side_bits", "y_bits", "side_share_pct"])
        for lmbda, run in sorted(stage2.items()):
            for r in json.loads((run / "rd.json").read_text())["per_image"]:
                w.writerow([lmbda, r["name"], r["side_bits"], r["y_bits"],
                            f"{100 * r['side_bits'] / (r['side_bits'] + r['y_bits']):.3f}"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", choices=sorted(PROFILES), default="cpu_proxy")
    ap.add_argument("--work", default=None, help="where runs go (default outputs/adaptive_<profile>)")
    ap.add_argument("--base-sweep", help="reuse a factorized sweep directory")
    ap.add_argument("--hyperprior-sweep", help="the hyperprior curve for context: a sweep or a published runs folder "
                    "(its hyperprior runs are used); default: train it on the rd_cpu_proxy recipe")
    add_output_args(ap, "experiments/adaptive/<profile>", what="tables and plot")
    ap.add_argument("--method", default="akima")
    ap.add_argument("--stage2-overrides", nargs="*", default=[], help="extra Hydra overrides for stage 2")
    ap.add_argument("--static-dir", help="static control runs fitted on training crops (compresslab.drivers."
                    "adaptive_static_control); the zoo and paper profiles run the control themselves")
    ap.add_argument("--static-loo-dir", help="leave-one-out static control runs (adaptive_static_control --fit loo)")
    ap.add_argument("--qualities", nargs="+", type=int, help="zoo/paper: a subset of q1-8 (default all)")
    ap.add_argument("--max-images", type=int, help="Kodak images for the bases, ideal and control (default all 24)")
    ap.add_argument("--crop", type=int, help="centre crop for those evaluations (default full images)")
    ap.add_argument("--static-train-crops", type=int, default=200, help="training crops the static control fits on")
    a = ap.parse_args()
    prof = PROFILES[a.profile]
    work = Path(a.work or ROOT / "outputs" / f"adaptive_{a.profile}")
    out = output_dir(a.out, a.publish, ROOT / "experiments" / "adaptive" / a.profile, "adaptive_repro", a.profile)
    out.mkdir(parents=True, exist_ok=True)

    per_lambda: dict[float, list[str]] = {}   # stage-2 overrides per base (the paper's (Nq, Mq, B) per quality)
    if prof["base"]:
        quals = [q for q in quality_table() if not a.qualities or q["quality"] in a.qualities]
        base_dir = zoo_bases(prof["base"], quals, work, a.max_images, a.crop)
        per_lambda = {float(q["lambda"]): [f"model.{k}={q[k]}" for k in ("Nq", "Mq", "bins")] for q in quals}
        hyper_dir = Path(a.hyperprior_sweep) if a.hyperprior_sweep else None
        static_dir = Path(a.static_dir) if a.static_dir else work / "static"
        missing = [q for q in quals if not (static_dir / f"lambda{float(q['lambda'])}" / "rd.json").exists()]
        if not a.static_dir and missing:  # the control on the same bases (it skips finished lambdas itself)
            sh([sys.executable, "-m", "compresslab.drivers.adaptive_static_control", "--base-sweep", str(base_dir),
                "--work", str(work), "--train-crops", str(a.static_train_crops)])
        loo_dir = Path(a.static_loo_dir) if a.static_loo_dir else work / "static_loo"
        loo_possible = all(RDResult.read(r / "rd.json").meta.images >= 2 for r in runs_by_lambda(base_dir).values())
        if not a.static_loo_dir and loo_possible and any(  # the leave-one-out control on the same images (>= 2)
                not (loo_dir / f"lambda{float(q['lambda'])}" / "rd.json").exists() for q in quals):
            sh([sys.executable, "-m", "compresslab.drivers.adaptive_static_control", "--fit", "loo", "--base-sweep",
                str(base_dir), "--work", str(work)])
        a.static_loo_dir = str(loo_dir)
    else:
        base_dir = Path(a.base_sweep) if a.base_sweep else trained_sweep("factorized", work)
        hyper_dir = Path(a.hyperprior_sweep) if a.hyperprior_sweep else trained_sweep("hyperprior", work)
        static_dir = Path(a.static_dir) if a.static_dir else None
    bases = runs_by_lambda(base_dir)
    stage2: dict[float, Path] = {}
    for lmbda, run in sorted(bases.items()):
        ckpt = base_checkpoint(run)
        target = work / "adaptive" / f"lambda{lmbda}"
        if not (target / "rd.json").exists():
            sh([sys.executable, "-m", "compresslab", "train", f"experiment={prof['stage2']}", f"model.base_ckpt={ckpt}",
                f"lambda={lmbda}", f"hydra.run.dir={target}", *per_lambda.get(lmbda, []), *a.stage2_overrides])
        stage2[lmbda] = target
        evaluate_ideal(ckpt, target / "ideal", lmbda, json.loads((run / "rd.json").read_text())["meta"])

    static = runs_by_lambda(static_dir) if static_dir else {}
    loo = runs_by_lambda(Path(a.static_loo_dir)) if a.static_loo_dir else {}
    controls = {name: runs for name, runs in ((control_label(static), static), (control_label(loo), loo)) if runs}
    hyper_runs = runs_by_lambda(hyper_dir, "hyperprior") if hyper_dir else {}
    runs = [str(p) for p in bases.values()] + [str(p) for p in stage2.values()] + \
        [str(p) for p in hyper_runs.values()] + [str(p) for c in controls.values() for p in c.values()]
    # pairwise columns: every curve vs the base, and vs each static control (the adaptive claim's references)
    summarize_runs(runs, out_dir=out, anchor="kodak/vtm", method=a.method, reference=["factorized", *controls])
    ideal = {k: v / "ideal" for k, v in stage2.items()}
    publish_runs(out, {"factorized": bases, "adaptive": stage2, "adaptive-ideal": ideal, **controls})
    side_info_table(stage2, out)
    hyper_model = RDResult.read(next(iter(hyper_runs.values())) / "rd.json").meta.model if hyper_runs else None
    complexity_table(next(iter(stage2.values())) / "checkpoints" / "last.ckpt", hyper_model, out)
    # per-lambda rate change of adaptive and ideal vs the base at (identical) PSNR
    # one bpp column and one rate-change column per static control (the training-crop fit, the leave-one-out fit)
    names = list(controls) or ["static"]
    rows = [f"| lambda | PSNR | base bpp | {' | '.join(f'{n} bpp' for n in names)} | adaptive bpp | ideal bpp | side bpp | "
            f"adaptive vs base | {' | '.join(f'adaptive vs {n}' for n in names)} | ideal vs base |",
            "|---|---|---|" + "---|" * len(names) + "---|---|---|---|" + "---|" * len(names) + "---|"]
    changes = []
    for lmbda, run in sorted(stage2.items()):
        b = json.loads((bases[lmbda] / "rd.json").read_text())["results"]
        ad = json.loads((run / "rd.json").read_text())
        idl = json.loads((run / "ideal" / "rd.json").read_text())["results"]
        side = sum(r["side_bits"] for r in ad["per_image"]) / sum(r["height"] * r["width"] for r in ad["per_image"])
        bb, ab, ib = b["bpp"][0], ad["results"]["bpp"][0], idl["bpp"][0]
        sbs = [json.loads((controls[n][lmbda] / "rd.json").read_text())["results"]["bpp"][0]
               if n in controls and lmbda in controls[n] else None for n in names]
        rows.append(f"| {lmbda} | {b['psnr-rgb'][0]:.2f} | {bb:.4f} | "
                    + " | ".join("n/a" if sb is None else f"{sb:.4f}" for sb in sbs)
                    + f" | {ab:.4f} | {ib:.4f} | {side:.5f} | {100 * (ab / bb - 1):+.2f} % | "
                    + " | ".join("n/a" if sb is None else f"{100 * (ab / sb - 1):+.2f} %" for sb in sbs)
                    + f" | {100 * (ib / bb - 1):+.2f} % |")
        changes.append((100 * (ab / bb - 1), 100 * (ib / bb - 1)))
    if changes:  # the thesis' -6.95 % is this statistic: the mean per-quality rate change at (identical) PSNR
        cells = ["mean", "", "", *[""] * len(names), "", "", "", f"{sum(c[0] for c in changes) / len(changes):+.2f} %",
                 *[""] * len(names), f"{sum(c[1] for c in changes) / len(changes):+.2f} %"]
        rows.append("| " + " | ".join(cells) + " |")
    # BD-rates over the whole curves (same PSNR at every lambda: the base is frozen), and the share of the ideal gain
    from compresslab.rd.bdrate import bd_rate

    def curve(runs: dict[float, Path]) -> tuple[list[float], list[float]]:
        pts = sorted((json.loads((r / "rd.json").read_text())["results"]["bpp"][0],
                      json.loads((r / "rd.json").read_text())["results"]["psnr-rgb"][0]) for r in runs.values())
        return [p[0] for p in pts], [p[1] for p in pts]

    ideal_runs = {k: v / "ideal" for k, v in stage2.items()}
    pairs = [("adaptive vs base", stage2, bases), ("ideal vs base", ideal_runs, bases)]
    for name, runs_ in controls.items():
        pairs += [(f"adaptive vs {name}", stage2, runs_), (f"{name} vs base", runs_, bases)]
    bd = {}
    rows += ["", f"| BD-rate ({a.method}, Kodak, real bitstreams) | value |", "|---|---|"]
    for name, test, ref in pairs:
        r = bd_rate(*curve(ref), *curve(test), method=a.method)
        bd[name] = r.bd_rate if r.available else None
        rows.append(f"| {name} | {f'{r.bd_rate:+.2f} %' if r.available else 'unavailable: ' + r.reason} |")
    if bd.get("adaptive vs base") is not None and bd.get("ideal vs base"):
        rows.append(f"| share of the ideal gain reached | {100 * bd['adaptive vs base'] / bd['ideal vs base']:.0f} % |")
    (out / "per_lambda.md").write_text("\n".join(rows) + "\n")
    print("\n".join(rows))
    print(f"\nwrote {out}: rd.png, rd_table.md/csv, per_lambda.md, side_info_bits.csv, complexity.md, summary.json")


def publish_runs(out: Path, curves: dict[str, dict[float, Path]]) -> None:
    """Every point of the summary into <out>/runs/<curve>-lambda<λ>/: its rd.json (run_dir relative) and, for a
    trained run, its config.yaml, git.json, git.diff and done.json (steps, wall time), so the committed folder says
    what produced each number."""
    import re

    from compresslab.drivers.pipeline_publish import copy_provenance, publishable, write_run_index

    for label, runs in curves.items():
        name = re.sub(r"[^a-z0-9.]+", "-", label.lower()).strip("-")
        for lmbda, run in sorted(runs.items()):
            rd = publishable(RDResult.read(run / "rd.json"), run)
            target = out / "runs" / f"{name}-lambda{lmbda}"
            rd.write(target / "rd.json")
            copy_provenance(run, target)
    write_run_index(out / "runs")


def control_label(runs: dict[float, Path]) -> str:
    """The curve label of a static control's runs, as their rd.json says (old files read under the new name)."""
    from compresslab.evaluation.results import RDResult

    for run in runs.values():
        return str(RDResult.read(run / "rd.json").meta.label)
    return ""


if __name__ == "__main__":
    from compresslab.errors import ConfigError

    try:
        main()
    except ConfigError as e:  # an output folder it may not write (published results without --publish): one line
        sys.exit(f"config error: {e}")
