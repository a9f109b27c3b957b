"""``compresslab`` console entry point: train, evaluate, export, anchors, bd-rate, rd, compress, decompress,
make-shards, fetch, download-kodak.

Errors the user can fix (missing files, corrupt checkpoints, bad containers) exit with status 2 and one line that
names the problem, instead of a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# Evaluation sets LIC papers report on, as folders under the data root (anchors: <name>/vtm, ... where shipped).
EVAL_SETS = {
    "kodak": "24 PNGs, kodim01.png ... kodim24.png; `compresslab fetch kodak`",
    "clic2020-professional": "the CLIC 2020 professional valid (41) or test (250) images, https://www.compression.cc/",
    "clic2020-mobile": "the CLIC 2020 mobile valid (61) or test (178) images, https://www.compression.cc/",
    "tecnick": "the 100 RGB 1200x1200 images of the Tecnick SAMPLING set, https://sourceforge.net/projects/testimages/",
}


def _model_override(args) -> dict | None:
    if not getattr(args, "model", None):
        return None
    cfg = {"name": args.model}
    if args.N:
        cfg["N"] = args.N
    if args.M:
        cfg["M"] = args.M
    return cfg


def cmd_evaluate(args) -> int:
    import torch

    from compresslab.data.root import resolve_data_root
    from compresslab.evaluation.evaluator import list_eval_images
    from compresslab.evaluation.lof_config import LOFConfig
    from compresslab.evaluation.results import evaluate_checkpoint

    torch.set_num_threads(args.threads) if args.threads else None
    images = args.images or str(resolve_data_root(args.data_root) / args.data)
    if not args.images and not Path(images).is_dir():
        raise FileNotFoundError(f"evaluation set {args.data!r} not found at {images}: expected its images in "
                                f"<data root>/{args.data}/ ({EVAL_SETS[args.data]}); pass --data-root or --images")
    files = list_eval_images(images, args.max_images)
    lof = LOFConfig(steps=args.lof_steps, patience=args.lof_patience, lr=args.lof_lr, lr_end=args.lof_lr_end,
                    optimize_z=not args.lof_fixed_z) if args.lof else None
    rd = evaluate_checkpoint(args.ckpt, files, crop=args.crop, lof=lof, lmbda=args.lmbda,
                             dataset=None if args.images else args.data, image_source=str(images),
                             model_override=_model_override(args), progress=True)
    if args.lof and args.wandb:
        _log_lof_curves(rd.per_image, args)
    m = rd.mean
    print(f"mean over {len(files)} images: bpp {m['bpp']:.4f} | PSNR {m['psnr-rgb']:.3f} dB | MS-SSIM "
          f"{m['ms-ssim-rgb']:.4f} | real/est bpp {m['bpp_ratio']:.4f} | enc {m['encoding_time']:.3f}s "
          f"dec {m['decoding_time']:.3f}s")
    if args.out:
        rd.write(args.out)
        print(f"wrote {args.out}")
    return 0


def _log_lof_curves(rows, args) -> None:
    import wandb

    from compresslab.wandb_mode import wandb_mode

    wandb_mode()
    run = wandb.init(project="compresslab", job_type="lof", name=f"lof-{Path(args.ckpt).stem}",
                     dir=str(Path(args.out).parent if args.out else "."))
    run.log({"lof/cost": wandb.plot.line_series(
        xs=[list(range(len(r["lof_curve"]))) for r in rows], ys=[r["lof_curve"] for r in rows],
        keys=[r["name"] for r in rows], title="LOF: true RD cost per iteration", xname="iteration")})
    run.finish()


def cmd_export(args) -> int:
    from compresslab.models.from_checkpoint import export_state_dict

    out, how = export_state_dict(args.ckpt, args.out)
    print(f"wrote {out}: a plain state dict with updated CDF tables; {how}")
    return 0


def cmd_anchors(args) -> int:
    from compresslab.evaluation.anchors import list_anchors, load_anchor

    for name in list_anchors(args.root):
        if args.dataset and not name.startswith(args.dataset):
            continue
        a = load_anchor(name, args.root)
        pts = len(a.results.get("bpp", []))
        extra = f"  [{a.meta.get('codec', '')}; {a.meta.get('version', '')}]" if args.verbose else ""
        print(f"{name:60s} {pts:2d} points{extra}")
    return 0


def cmd_anchors_build(args) -> int:
    from compresslab.data.images import find_images
    from compresslab.evaluation.anchor_builder import build_anchor

    images = find_images(Path(args.images))[: args.max_images or None]
    doc = build_anchor(args.codec, images, args.name, qualities=args.qualities, encoder=args.encoder,
                       decoder=args.decoder, ext=args.ext, version_cmd=args.version_cmd, dataset=args.dataset)
    out = Path(args.out) / args.dataset / f"{args.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    r = doc["results"]
    print(f"wrote {out}: {len(r['bpp'])} points, {r['bpp'][0]:.3f}-{r['bpp'][-1]:.3f} bpp, "
          f"{r['psnr-rgb'][0]:.2f}-{r['psnr-rgb'][-1]:.2f} dB on {len(images)} images; use it as "
          f"{args.dataset}/{args.name} with COMPRESSLAB_ANCHORS={args.out}")
    return 0


def cmd_fetch(args) -> int:
    from compresslab.data.fetch import FetchError, fetch_many, sources

    if args.list or not args.names:
        for name, src in sources().items():
            print(f"{name:16s} {len(src.files):4d} files  {src.about}")
        return 0
    try:
        done = fetch_many(args.names, args.root, mirror=args.mirror)
    except (FetchError, OSError) as e:  # OSError: a full disk or an unwritable root, named by the message
        print(f"error: {e}", file=sys.stderr)
        return 1
    for name, dest in done.items():
        print(f"{name}: ready under {dest}")
    return 0


def add_bd_rule_args(p: argparse.ArgumentParser) -> None:
    """The BD-rate rules as flags: one definition for `bd-rate` and `rd`, defaulting to evaluation.bdrate's
    constants (the module holds the rules; see its docstring)."""
    from compresslab.evaluation import bdrate as b

    p.add_argument("--method", default=b.DEFAULT_METHOD, choices=b.METHODS)
    p.add_argument("--min-coverage", type=float, default=b.MIN_COVERAGE,
                   help=f"refuse below this share of the narrower curve's quality range (default {b.MIN_COVERAGE})")
    p.add_argument("--min-points-in-band", type=int, default=b.MIN_POINTS_IN_BAND,
                   help="refuse when either curve has fewer measured points in the shared band (default "
                        f"{b.MIN_POINTS_IN_BAND})")
    p.add_argument("--min-band-db", type=float, default=b.MIN_BAND_DB,
                   help=f"refuse a shared quality band narrower than this, in dB (default {b.MIN_BAND_DB:g})")
    p.add_argument("--band-tol-db", type=float, default=b.BAND_TOL_DB,
                   help=f"a point this close to the band counts as inside it (default {b.BAND_TOL_DB:g})")
    p.add_argument("--monotone", default=b.BDRules.monotone, choices=b.MONOTONE_RULES,
                   help="non-monotone curves: refuse, naming the points (default), or drop the fewest, naming them")
    p.add_argument("--duplicates", default=b.BDRules.duplicates, choices=b.DUPLICATE_RULES,
                   help="points sharing a rate: refuse, naming them (default), or average each group into one point")


def bd_rules_from_args(args):
    from compresslab.evaluation.bdrate import BDRules

    return BDRules(method=args.method, min_points_in_band=args.min_points_in_band, min_coverage=args.min_coverage,
                   min_band_db=args.min_band_db, band_tol_db=args.band_tol_db, monotone=args.monotone,
                   duplicates=args.duplicates)


def _curve_points(spec: str, metric: str, root: str | None) -> tuple[list[dict], str]:
    """The points one `bd-rate` argument names, and its label: a result file (one point, like a run's rd.json, or
    many, like CompressAI's), a folder (its runs' rd.json files merged into one curve) or an anchor name."""
    from compresslab.evaluation.anchors import load_anchor
    from compresslab.evaluation.curves import curve_label, file_points, load_points

    path = Path(spec)
    if path.is_dir():
        curves = load_points([spec])
        if not curves:
            raise FileNotFoundError(f"{spec}: no rd.json files under this folder")
        if len(curves) > 1:
            said = ", ".join(f"{label} ({len(pts)} points)" for label, pts in sorted(curves.items()))
            raise ValueError(f"{spec} holds {len(curves)} curves ({said}): give one curve's folder or files, or "
                             f"`compresslab rd {spec}` for a table of all")
        (label, pts), = curves.items()
        return pts, label
    if path.is_file():
        try:
            doc = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{spec} is not a JSON result file ({e})") from None
        if not isinstance(doc, dict):
            raise ValueError(f"{spec} is not a CompressAI-format result file (expected a JSON object)")
        return file_points(doc, path), curve_label(doc, path)
    from compresslab.evaluation.anchors import AnchorError

    try:
        a = load_anchor(spec, root)
    except AnchorError as e:
        raise AnchorError(f"{spec} is not a result file, a folder of runs or an anchor name: {e}") from None
    return [{"bpp": b, metric: q, "file": spec} for b, q in zip(*a.curve(metric))], spec


def _curve(specs: list[str], metric: str, root: str | None):
    """(rates, qualities, point names, label) of the points several arguments name together (one curve)."""
    points, labels = [], []
    for spec in specs:
        pts, label = _curve_points(spec, metric, root)
        points += pts
        labels += [label] if label not in labels else []
    if len(labels) > 1:
        raise ValueError(f"{' '.join(specs)} name {len(labels)} curves ({', '.join(labels)}), not one: pass one "
                         f"curve's files or folder, or `compresslab rd` for a table of all")
    missing = sorted({p["file"] for p in points if metric not in p})
    if missing:
        raise ValueError(f"{', '.join(missing)}: no {metric!r} values (CompressAI format: results.bpp and "
                         f"results.{metric}); pass --metric for an axis the files hold")
    names = [str(p["file"]) for p in points]
    return [p["bpp"] for p in points], [p[metric] for p in points], names, labels[0]


def cmd_bd_rate(args) -> int:
    from compresslab.evaluation.bdrate import bd_rate

    # either side is a result file (one point or many), a folder of runs (merged into one curve) or a registry name
    rules = bd_rules_from_args(args)
    ar, aq, an, _ = _curve([args.anchor], args.metric, args.root)
    tr, tq, tn, label = _curve(args.curve, args.metric, args.root)
    res = bd_rate(ar, aq, tr, tq, rules=rules, metric=args.metric, anchor_names=an, test_names=tn)
    name = Path(args.curve[0]).name if len(args.curve) == 1 else f"{label} ({len(args.curve)} inputs)"
    print(f"{name} vs {args.anchor}: {res.line(args.metric)}")
    return 0 if res.available else 1


def _default_rd_out(paths: list[str]) -> str:
    """Beside the runs when one folder is summarised (<dir>/rd_summary), else a new time-stamped folder: a summary
    never silently replaces an earlier one in whatever the current directory happens to be."""
    if len(paths) == 1 and Path(paths[0]).is_dir():
        return str(Path(paths[0]) / "rd_summary")
    import time
    return str(Path("outputs") / "rd" / time.strftime("%Y%m%d-%H%M%S"))


def cmd_sweep_report(args) -> int:
    from compresslab.sweeps.report import write_sweep_report

    print(f"wrote {write_sweep_report(args.sweep_dir)}")
    return 0


def cmd_reproduce(args) -> int:
    from compresslab.reproduce import papers, reproduce

    if args.list or not args.paper:
        for name, doc in papers().items():
            print(f"{name}: {doc['title']}\n  profiles: {', '.join(doc['profiles'])}")
        return 0
    step_args = list(args.step_args)
    if "--dry-run" in step_args:  # after --step-args it would reach every step, and the run would be real
        step_args.remove("--dry-run")
        args.dry_run = True
        print("(--dry-run came after --step-args: taken as reproduce's own --dry-run, not passed to the steps)")
    misplaced = [f for f in ("--report-only", "--rerun", "--no-wandb") if f in step_args]
    if misplaced:
        raise ValueError(f"{', '.join(misplaced)} came after --step-args, so it would be passed to every step: put "
                         f"reproduce's own flags before --step-args (which must come last)")
    report = reproduce(args.paper, args.profile, out=args.out, rerun=args.rerun, report_only=args.report_only,
                       dry_run=args.dry_run, log_wandb=not args.no_wandb, step_args=step_args)
    if args.dry_run:
        print("\n".join(report) + "\n(dry run: nothing ran, nothing was written, no W&B run was started)")
        return 0
    print(report.read_text())
    print(f"report: {report}")
    return 0


def cmd_pipeline(args) -> int:
    """A staged recipe of conf/pipeline (compresslab.drivers.pipeline, which has its own flags)."""
    from compresslab.drivers.pipeline import main as pipeline_main

    return pipeline_main(args.rest)


def cmd_results(args) -> int:
    """render: rewrite every marked number from its source; check: fail when a committed number differs."""
    from compresslab.evaluation.render import render, typed_in

    root = Path(args.root).resolve()
    files, bad, count = render(root, args.paths, write=args.action == "render")
    if args.action == "check":
        typed = [] if args.paths else typed_in(root)
        for m in [*bad, *typed]:
            print(m, file=sys.stderr)
        print(f"{count} generated numbers in {len(files)} files: "
              + ("all match their sources" if not bad else f"{len(bad)} differ from their sources "
                 f"(compresslab results render rewrites them)")
              + (f"; {len(typed)} typed by hand in the result pages" if typed else ""))
        return 1 if bad or typed else 0
    print(f"rendered {count} numbers in {len(files)} files ({len(bad)} changed)")
    for m in bad:
        print(f"  {m.file}:{m.line}: {m.found} -> {m.expected}")
    return 0


def cmd_rd(args) -> int:
    from compresslab.evaluation.curves import summarize_runs

    out = args.out or _default_rd_out(args.paths)
    summarize_runs(args.paths, out_dir=out, anchor=args.anchor, reference=args.reference,
                   rules=bd_rules_from_args(args), group_by=args.group_by or (), log_wandb=args.wandb,
                   metric=args.metric)
    print(f"wrote {out}/rd_table.md, rd_table.csv, rd.png")
    return 0


def cmd_compress(args) -> int:
    from compresslab.evaluation.codec import compress_file

    lof = None
    if args.lof:
        from compresslab.evaluation.lof_config import LOFConfig

        lof = LOFConfig(steps=args.lof_steps)
    info = compress_file(args.ckpt, args.image, args.output, lof=lof, lmbda=args.lmbda, max_pixels=args.max_pixels)
    print(f"wrote {args.output}: {info['bytes']} bytes ({info['bpp']:.4f} bpp incl. header)")
    return 0


def cmd_decompress(args) -> int:
    from compresslab.evaluation.codec import decompress_file

    decompress_file(args.file, args.ckpt, args.output, isolate=not args.in_process, timeout=args.timeout,
                    memory_mb=args.memory_mb, max_pixels=args.max_pixels)
    print(f"wrote {args.output}")
    return 0


def cmd_make_shards(args) -> int:
    from compresslab.data.shards import write_shards

    index = write_shards(args.src, args.out, max_count=args.max_count, max_size=args.max_size_mb * 1e6)
    print(f"{index['images']} images in {len(index['shards'])} shards under {args.out}; train with\n"
          f"  python train.py data.layout=shards \"data.train_shards='{index['train_shards']}'\"")  # braces: quoted
    return 0


def cmd_download_kodak(args) -> int:
    """Kept for old scripts: `compresslab fetch kodak` into the folder's parent (checksums, resume)."""
    from compresslab.data.fetch import FetchError, fetch, sources

    dest = Path(args.dest)
    if dest.name != "kodak":
        print(f"error: give the kodak folder itself (<data root>/kodak), not {dest}", file=sys.stderr)
        return 2
    try:
        fetch(sources()["kodak"], dest.parent)
    except FetchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"Kodak ready in {dest}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="compresslab", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("train", help="train a model: Hydra overrides, as train.py (compresslab train model=factorized "
                                 "lambda=0.0067; --help lists the config groups)")

    evaluate_p = sub.add_parser("evaluate", help="real-bitstream evaluation of a checkpoint (Kodak by default)")
    evaluate_p.add_argument("ckpt")
    evaluate_p.add_argument("--images", help="folder or file (default: <data root>/kodak)")
    evaluate_p.add_argument("--data", choices=sorted(EVAL_SETS), default="kodak",
                            help="evaluation set: <data root>/<name>/ (anchors exist for kodak and clic2020-*)")
    evaluate_p.add_argument("--data-root", default=None)
    evaluate_p.add_argument("--out", help="write CompressAI-format JSON here")
    evaluate_p.add_argument("--max-images", type=int)
    evaluate_p.add_argument("--crop", type=int, help="centre-crop each image (quick runs)")
    evaluate_p.add_argument("--threads", type=int)
    evaluate_p.add_argument("--lof", action="store_true", help="latent overfitting at encode time (decoder unchanged)")
    from compresslab.evaluation.lof_config import LOFConfig  # torch-free: building the parser imports no torch

    lof_defaults = LOFConfig()  # one definition of LOF's defaults (conf/train.yaml's lof block mirrors it, tested)
    evaluate_p.add_argument("--lof-steps", type=int, default=lof_defaults.steps)
    evaluate_p.add_argument("--lof-patience", type=int, default=lof_defaults.patience)
    evaluate_p.add_argument("--lof-lr", type=float, default=lof_defaults.lr)
    evaluate_p.add_argument("--lof-lr-end", type=float, default=lof_defaults.lr_end)
    evaluate_p.add_argument("--lof-fixed-z", action="store_true", help="hyperprior models: optimise y only")
    evaluate_p.add_argument("--lmbda", type=float, help="lambda for LOF when the checkpoint does not record it")
    evaluate_p.add_argument("--wandb", action="store_true", help="log LOF cost curves to W&B (offline unless configured)")
    evaluate_p.add_argument("--model", help="model name for plain state dicts (e.g. factorized)")
    evaluate_p.add_argument("--N", type=int)
    evaluate_p.add_argument("--M", type=int)
    evaluate_p.set_defaults(func=cmd_evaluate)

    export_p = sub.add_parser("export", help="write a plain state dict CompressAI's eval_model can load")
    export_p.add_argument("ckpt")
    export_p.add_argument("out")
    export_p.set_defaults(func=cmd_export)

    pipe_p = sub.add_parser("pipeline", add_help=False,
                            help="a staged recipe of conf/pipeline: pretrain, per-lambda stage, evaluate, publish, rd "
                                 "(compresslab pipeline --help)")
    pipe_p.add_argument("rest", nargs=argparse.REMAINDER)
    pipe_p.set_defaults(func=cmd_pipeline)
    results_p = sub.add_parser("results", help="numbers in Markdown from their result files: render | check")
    results_p.add_argument("action", choices=["render", "check"])
    results_p.add_argument("paths", nargs="*", help="Markdown files or globs (default: README.md, docs/, experiments/)")
    results_p.add_argument("--root", default=".", help="the repository root the sources are relative to")
    results_p.set_defaults(func=cmd_results)
    anchors_p = sub.add_parser("anchors", help="list anchor curves")
    anchors_p.add_argument("--root", help="anchor folder (default <data root>/anchors)")
    anchors_p.add_argument("--dataset", help="e.g. kodak")
    anchors_p.add_argument("-v", "--verbose", action="store_true")
    anchors_p.set_defaults(func=cmd_anchors)
    anchors_sub = anchors_p.add_subparsers(dest="anchors_cmd")
    build_p = anchors_sub.add_parser("build", help="run a classical codec over a quality ladder into an anchor JSON")
    build_p.add_argument("--codec", required=True, choices=["jpeg", "webp", "jpeg2000", "external"])
    build_p.add_argument("--images", required=True, help="image folder (e.g. <data root>/kodak)")
    build_p.add_argument("--name", required=True, help="anchor name, e.g. jpeg-pillow")
    build_p.add_argument("--dataset", default="kodak", help="anchor dataset prefix (default kodak)")
    build_p.add_argument("--out", default="anchors", help="anchor folder (default ./anchors)")
    build_p.add_argument("--qualities", nargs="+", type=int, help="quality ladder (codec default if omitted)")
    build_p.add_argument("--max-images", type=int)
    build_p.add_argument("--encoder", help="external: command template with {input} {output} {quality}")
    build_p.add_argument("--decoder", help="external: command template with {input} {output} (writes a PNG)")
    build_p.add_argument("--ext", default=".bin", help="external: bitstream file extension")
    build_p.add_argument("--version-cmd", help="external: a command printing the codec version (recorded)")
    build_p.set_defaults(func=cmd_anchors_build)

    bd_rate_p = sub.add_parser("bd-rate", help="BD-rate of a curve vs an anchor (files, run folders or names)")
    bd_rate_p.add_argument("anchor", help="registry name (kodak/vtm), a CompressAI-format result file or a folder of "
                                          "runs")
    bd_rate_p.add_argument("curve", nargs="+", help="the test curve: CompressAI-format JSON files (a run's "
                           "one-point rd.json, an eval_model output), folders of runs (each run's rd.json is one "
                           "point) or a registry name; all of them together form one curve")
    bd_rate_p.add_argument("--metric", default="psnr-rgb", choices=["psnr-rgb", "ms-ssim-rgb", "ms-ssim-db-rgb"])
    add_bd_rule_args(bd_rate_p)
    bd_rate_p.add_argument("--root", help="anchor folder (default: the anchor search path)")
    bd_rate_p.set_defaults(func=cmd_bd_rate)

    rd_p = sub.add_parser("rd", help="RD curves, BD-rate table and plot from run directories")
    rd_p.add_argument("paths", nargs="+", help="run dirs, sweep dirs, rd.json files or globs")
    rd_p.add_argument("--anchor", default="kodak/vtm")
    rd_p.add_argument("--reference", nargs="+", help="curve labels (e.g. factorized) or anchor names: one pairwise "
                      "BD-rate column each")
    add_bd_rule_args(rd_p)
    rd_p.add_argument("--metric", default="psnr-rgb", choices=["psnr-rgb", "ms-ssim-rgb", "ms-ssim-db-rgb"],
                      help="quality axis (ms-ssim-db-rgb is derived from ms-ssim-rgb where a file lacks it)")
    rd_p.add_argument("--group-by", nargs="*", help="meta keys that split curves, e.g. model.N")
    rd_p.add_argument("--out")
    rd_p.add_argument("--wandb", action="store_true", help="also log a W&B report run (offline unless configured)")
    rd_p.set_defaults(func=cmd_rd)

    compress_p = sub.add_parser("compress", help="image -> .clab file")
    compress_p.add_argument("ckpt")
    compress_p.add_argument("image")
    compress_p.add_argument("-o", "--output", required=True)
    compress_p.add_argument("--lof", action="store_true", help="overfit the latent first (same decoder)")
    compress_p.add_argument("--lof-steps", type=int, default=lof_defaults.steps)
    compress_p.add_argument("--lmbda", type=float)
    compress_p.add_argument("--max-pixels", type=int, default=1 << 26,  # codec.DEFAULT_MAX_PIXELS (tested)
                            help="refuse larger images from their header, before decoding them (default 64 MP)")
    compress_p.set_defaults(func=cmd_compress)

    decompress_p = sub.add_parser("decompress", help=".clab file -> PNG")
    decompress_p.add_argument("file")
    decompress_p.add_argument("--ckpt", required=True, help="the checkpoint that encoded the file")
    decompress_p.add_argument("-o", "--output", required=True)
    decompress_p.add_argument("--in-process", action="store_true",
                   help="decode in this process (only for files you wrote yourself: a crafted payload can crash "
                        "CompressAI's C++ entropy decoder); default: an isolated child process")
    decompress_p.add_argument("--timeout", type=float, default=600.0, help="seconds before an isolated decode is abandoned")
    decompress_p.add_argument("--memory-mb", type=int, default=16384,
                              help="refuse files whose decode is estimated (from the header) to need more; also the "
                                   "isolated decoder's address-space limit (a lower `ulimit -v` is kept)")
    decompress_p.add_argument("--max-pixels", type=int, default=1 << 26,  # codec.DEFAULT_MAX_PIXELS (tested)
                              help="refuse files whose header declares a larger image (default 64 MP)")
    decompress_p.set_defaults(func=cmd_decompress)

    sr_p = sub.add_parser("sweep-report", help="report of an Optuna study (hparams_search sweep folder)")
    sr_p.add_argument("sweep_dir")
    sr_p.set_defaults(func=cmd_sweep_report)

    repro_p = sub.add_parser("reproduce", help="run a paper's recipe and report its numbers beside ours")
    repro_p.add_argument("paper", nargs="?", help="see --list")
    repro_p.add_argument("--profile", default="cpu_proxy")
    repro_p.add_argument("--out", help="report folder (default experiments/reproduce/<paper>_<profile>)")
    repro_p.add_argument("--list", action="store_true", help="papers and their profiles")
    repro_p.add_argument("--rerun", action="store_true", help="run the steps even if the results are present")
    repro_p.add_argument("--report-only", action="store_true", help="only (re)write the report from the results")
    repro_p.add_argument("--dry-run", action="store_true", help="print the steps without running them")
    repro_p.add_argument("--no-wandb", action="store_true", help="do not log the report to W&B (offline by default)")
    repro_p.add_argument("--step-args", nargs=argparse.REMAINDER, default=[],
                         help="everything after it is appended to every step (a smoke-scale budget, e.g. --step-args "
                              "--qualities 1 --max-images 1); must come last")
    repro_p.set_defaults(func=cmd_reproduce)

    shards_p = sub.add_parser("make-shards", help="pack an image folder into WebDataset tar shards (data.layout=shards)")
    shards_p.add_argument("src", help="image folder (recursive)")
    shards_p.add_argument("out", help="empty output folder")
    shards_p.add_argument("--max-count", type=int, default=10_000, help="images per shard")
    shards_p.add_argument("--max-size-mb", type=float, default=1000.0, help="bytes per shard (MB)")
    shards_p.set_defaults(func=cmd_make_shards)
    fetch_p = sub.add_parser("fetch", help="download datasets or CompressAI's anchors (checksums, resume)")
    fetch_p.add_argument("names", nargs="*", help="kodak, anchors, clic2020, div2k (none: list them)")
    fetch_p.add_argument("--root", help="target folder (default: the data root, $COMPRESSLAB_DATA or ./data)")
    fetch_p.add_argument("--mirror", help="serve every URL from this host, same paths ($COMPRESSLAB_MIRROR)")
    fetch_p.add_argument("--list", action="store_true")
    fetch_p.set_defaults(func=cmd_fetch)

    kodak_p = sub.add_parser("download-kodak", help="download the Kodak test set (needs network)")
    kodak_p.add_argument("dest", nargs="?", default="data/kodak")
    kodak_p.set_defaults(func=cmd_download_kodak)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:  # the Hydra app takes its own overrides (`compresslab train model=adaptive lambda=0.01`)
        from compresslab.app import main as train_main

        train_main(argv[1:])
        return 0
    args = build_parser().parse_args(argv)
    from compresslab.io.checkpoints import CheckpointError
    from compresslab.data.images import DataLayoutError, ImageDecodeError
    from compresslab.evaluation.anchors import AnchorError
    from compresslab.evaluation.container import ContainerError

    try:
        return args.func(args)
    except BrokenPipeError:  # `compresslab anchors | head`: the reader left; not an error of ours
        sys.stderr.close()
        return 0
    except (CheckpointError, ContainerError, DataLayoutError, ImageDecodeError, AnchorError, FileNotFoundError, FileExistsError,
            ValueError, OSError) as e:  # OSError: a full disk or an unreadable file, named by the message
        print(f"compresslab {args.cmd}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
