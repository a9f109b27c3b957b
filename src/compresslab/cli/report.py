"""``compresslab report``: one self-contained interactive HTML page of runs, sweeps and Optuna studies."""

from __future__ import annotations

import time


def cmd_report(args) -> int:
    from pathlib import Path

    from compresslab.cli.curves import bd_rules_from_args
    from compresslab.reporting.page import CropSpec, report

    crops = None
    if args.crops:
        at = None
        if args.crop_at:
            parts = args.crop_at.split(",")
            if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
                raise ValueError(f"--crop-at {args.crop_at!r}: give the crop's top-left corner as X,Y (e.g. 300,200)")
            at = (int(parts[0]), int(parts[1]))
        crops = CropSpec(Path(args.crops), args.crop_size, at)
    t0 = time.perf_counter()
    path, size, page = report(args.paths, args.out, force=args.force, anchor=args.anchor, title=args.title,
                              rules=bd_rules_from_args(args), allow_partial=args.allow_partial,
                              crops=crops, watch=args.watch, interval=args.interval, refresh_s=args.refresh,
                              shared_js=args.shared_js)
    if args.watch:
        return 0
    sections = ", ".join(h for _, h, _ in page.sections)
    js = f"plotly.js from {page.plotly_js}" if page.plotly_js else "self-contained"
    print(f"wrote {path} ({size / 1e6:.1f} MB, {js}) in {time.perf_counter() - t0:.1f} s: {sections}")
    return 0


def add_commands(sub) -> None:
    from compresslab.cli.curves import add_bd_rule_args

    p = sub.add_parser("report", help="one self-contained HTML page (RD curves, BD matrix, per-image, training "
                                      "curves, Optuna study) of run folders, sweep folders, rd.json files or a "
                                      "storage URL")
    p.add_argument("paths", nargs="+", help="run folders, sweep folders, rd.json / metrics.csv / rd_live.jsonl files, "
                                            "or an Optuna storage URL (sqlite:///sweep/optuna.db)")
    p.add_argument("-o", "--out", required=True, help="the HTML file to write (refused if it exists, unless --force)")
    p.add_argument("--force", action="store_true", help="replace an existing report at --out")
    p.add_argument("--anchor", default="kodak/vtm", help="the anchor of the BD-rate column and the RD plot")
    add_bd_rule_args(p)  # the BD-rate rules of `compresslab rd`, flag for flag: the page's numbers are its numbers
    p.add_argument("--title", help="page title (default: the paths given)")
    p.add_argument("--watch", action="store_true", help="rebuild the page whenever a result file under the paths "
                   "appears or changes (Ctrl-C stops); a file not readable yet is named in the page")
    p.add_argument("--interval", type=float, default=2.0, help="--watch: seconds between looks at the files")
    p.add_argument("--refresh", type=int, default=30, help="--watch: the page reloads itself every this many "
                   "seconds in a browser left open (0: never)")
    p.add_argument("--crops", metavar="IMAGE", help="decoded crops of this image side by side: each run that keeps "
                   "its checkpoint (real bitstream), JPEG and WebP at the nearest rates, the original")
    p.add_argument("--crop-size", type=int, default=160, help="crop side in pixels (default 160)")
    p.add_argument("--crop-at", metavar="X,Y", help="the crop's top-left corner (default: the image's centre)")
    p.add_argument("--shared-js", metavar="DIR", help="load plotly.js from DIR/plotly-<version>.min.js (written "
                   "there if absent) by relative path instead of inlining it: for pages committed side by side")
    p.set_defaults(func=cmd_report)
