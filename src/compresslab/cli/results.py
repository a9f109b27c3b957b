"""``compresslab results | reproduce | pipeline | sweep-report``: published numbers and the recipes that make them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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
    misplaced = [f for f in ("--report-only", "--rerun", "--no-wandb", "--publish") if f in step_args]
    if misplaced:
        raise ValueError(f"{', '.join(misplaced)} came after --step-args, so it would be passed to every step: put "
                         f"reproduce's own flags before --step-args (which must come last)")
    report = reproduce(args.paper, args.profile, out=args.out, rerun=args.rerun, report_only=args.report_only,
                       dry_run=args.dry_run, log_wandb=not args.no_wandb, step_args=step_args, publish=args.publish)
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


def add_commands(sub) -> None:
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

    sr_p = sub.add_parser("sweep-report", help="report of an Optuna study (hparams_search sweep folder)")
    sr_p.add_argument("sweep_dir")
    sr_p.set_defaults(func=cmd_sweep_report)

    repro_p = sub.add_parser("reproduce", help="run a paper's recipe and report its numbers beside ours")
    repro_p.add_argument("paper", nargs="?", help="see --list")
    repro_p.add_argument("--profile", default="cpu_proxy")
    repro_p.add_argument("--out", help="a new report folder (default: a new outputs/reproduce/<paper>_<profile>/<id>/, "
                                       "which also holds the steps' results)")
    repro_p.add_argument("--publish", action="store_true",
                         help="write the steps' results into the repository and the report into "
                              "experiments/reproduce/<paper>_<profile> (keeps the producing run's step times)")
    repro_p.add_argument("--list", action="store_true", help="papers and their profiles")
    repro_p.add_argument("--rerun", action="store_true", help="run the steps even if the results are present")
    repro_p.add_argument("--report-only", action="store_true", help="only (re)write the report from the results")
    repro_p.add_argument("--dry-run", action="store_true", help="print the steps without running them")
    repro_p.add_argument("--no-wandb", action="store_true", help="do not log the report to W&B (offline by default)")
    repro_p.add_argument("--step-args", nargs=argparse.REMAINDER, default=[],
                         help="everything after it is appended to every step (a smoke-scale budget, e.g. --step-args "
                              "--qualities 1 --max-images 1); must come last")
    repro_p.set_defaults(func=cmd_reproduce)
