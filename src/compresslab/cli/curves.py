"""``compresslab anchors | bd-rate | rd``: curves, anchors and BD-rates from result files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

def cmd_anchors(args) -> int:
    from compresslab.rd.anchors import list_anchors, load_anchor
    from compresslab.rd.comparable import CurveKey

    for name in list_anchors(args.root):
        if args.dataset and not name.startswith(args.dataset):
            continue
        a = load_anchor(name, args.root)
        pts = len(a.results.get("bpp", []))
        extra = f"  [{a.meta.get('codec', '')}; {a.meta.get('version', '')}]" if args.verbose else ""
        key = CurveKey.of_anchor(name, a.meta)  # an anchor built on part of its set says so
        print(f"{name:60s} {pts:2d} points{extra}" + (f"  (built on {key.evaluation()})" if key.partial else ""))
    return 0


def cmd_anchors_build(args) -> int:
    from compresslab.data.images import find_images
    from compresslab.rd.anchor_builder import build_anchor

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


def add_bd_rule_args(p: argparse.ArgumentParser) -> None:
    """The BD-rate rules as flags: one definition for `bd-rate` and `rd`, defaulting to rd.bdrate's
    constants (the module holds the rules; see its docstring)."""
    from compresslab.rd import bdrate as b

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
    p.add_argument("--allow-partial", action="store_true",
                   help="compare curves measured differently (fewer images, crops, another set; e.g. a smoke run vs "
                        "a full anchor), saying so beside the number; refused by default")


def bd_rules_from_args(args):
    from compresslab.rd.bdrate import BDRules

    return BDRules(method=args.method, min_points_in_band=args.min_points_in_band, min_coverage=args.min_coverage,
                   min_band_db=args.min_band_db, band_tol_db=args.band_tol_db, monotone=args.monotone,
                   duplicates=args.duplicates)


def _curve_points(spec: str, metric: str, root: str | None):
    """The points one `bd-rate` argument names, its label and its comparability key: a result file (one point, like
    a run's rd.json, or many, like CompressAI's), a folder (its runs' rd.json files: one curve, or refused naming
    the curves when its points differ in label or key) or an anchor name."""
    from compresslab.rd.anchors import load_anchor
    from compresslab.rd.comparable import CurveKey
    from compresslab.rd.points import curve_label, file_points, load_curves
    from compresslab.evaluation.results import RDMeta

    path = Path(spec)
    if path.is_file():
        try:
            doc = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{spec} is not a JSON result file ({e})") from None
        if not isinstance(doc, dict):
            raise ValueError(f"{spec} is not a CompressAI-format result file (expected a JSON object)")
        key = CurveKey.of_meta(RDMeta.from_json(doc.get("meta") or {}))
        return file_points(doc, path), curve_label(doc, path), key
    if path.is_dir():
        curves, keys, _ = load_curves([spec])
        if not curves:
            raise FileNotFoundError(f"{spec}: no rd.json files under this folder")
        if len(curves) > 1:
            said = ", ".join(f"{label} ({len(pts)} points)" for label, pts in sorted(curves.items()))
            raise ValueError(f"{spec} holds {len(curves)} curves ({said}): give one curve's folder or files, or "
                             f"`compresslab rd {spec}` for a table of all")
        (label, pts), = curves.items()
        return pts, label, keys[label]
    from compresslab.rd.anchors import AnchorError

    try:
        a = load_anchor(spec, root)
    except AnchorError as e:
        raise AnchorError(f"{spec} is not a result file, a folder of runs or an anchor name: {e}") from None
    points = [{"bpp": b, metric: q, "file": spec} for b, q in zip(*a.curve(metric))]
    return points, spec, CurveKey.of_anchor(spec, a.meta)


def _curve(specs: list[str], metric: str, root: str | None):
    """(rates, qualities, point names, label, key) of the points several arguments name together (one curve: one
    label and one comparability key, else refused naming what differs)."""
    from compresslab.rd.comparable import FIELD_NAMES, differing_fields

    points, labels, keys = [], [], []
    for spec in specs:
        pts, label, key = _curve_points(spec, metric, root)
        points += pts
        labels += [label] if label not in labels else []
        keys.append((spec, key))
    if len(labels) > 1:
        raise ValueError(f"{' '.join(specs)} name {len(labels)} curves ({', '.join(labels)}), not one: pass one "
                         f"curve's files or folder, or `compresslab rd` for a table of all")
    fields = differing_fields([k for _, k in keys])
    if fields:
        def values(f):  # each value once, with the first input holding it and how many more do
            held = {}
            for s, k in keys:
                held.setdefault(getattr(k, f), []).append(s)
            return " vs ".join(f"{v} ({s[0]}{f' +{len(s) - 1} more' if len(s) > 1 else ''})" for v, s in held.items())

        said = "; ".join(f"{FIELD_NAMES[f]} {values(f)}" for f in fields)
        what = " ".join(specs) if len(specs) <= 2 else f"the {len(specs)} inputs"
        raise ValueError(f"{what} were not measured or trained the same way ({said}), so they are not one "
                         f"curve: pass one evaluation's files, or `compresslab rd` to see them as separate curves")
    missing = sorted({p["file"] for p in points if metric not in p})
    if missing:
        raise ValueError(f"{', '.join(missing)}: no {metric!r} values (CompressAI format: results.bpp and "
                         f"results.{metric}); pass --metric for an axis the files hold")
    names = [str(p["file"]) for p in points]
    return [p["bpp"] for p in points], [p[metric] for p in points], names, labels[0], keys[0][1]


def cmd_bd_rate(args) -> int:
    from compresslab.rd.comparable import checked_bd_rate

    # either side is a result file (one point or many), a folder of runs (merged into one curve) or a registry name;
    # curves measured differently (a partial evaluation vs a full anchor) are refused unless --allow-partial
    rules = bd_rules_from_args(args)
    ar, aq, an, _, akey = _curve([args.anchor], args.metric, args.root)
    tr, tq, tn, label, tkey = _curve(args.curve, args.metric, args.root)
    res = checked_bd_rate(ar, aq, tr, tq, test=tkey, other=akey, other_name=args.anchor,
                          allow_partial=args.allow_partial, rules=rules, metric=args.metric, anchor_names=an,
                          test_names=tn)
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


def cmd_rd(args) -> int:
    from compresslab.rd.curves import summarize_runs

    out = args.out or _default_rd_out(args.paths)
    summarize_runs(args.paths, out_dir=out, anchor=args.anchor, reference=args.reference,
                   rules=bd_rules_from_args(args), group_by=args.group_by or (), log_wandb=args.wandb,
                   metric=args.metric, allow_partial=args.allow_partial)
    print(f"wrote {out}/rd_table.md, rd_table.csv, rd.png")
    return 0


def add_commands(sub) -> None:
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
