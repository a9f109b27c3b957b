"""Hydra callbacks: create the sweep folder up front (for study storage in it) and keep the sweep's RD summary (curves,
BD-rates, plot) up to date after every job, so that a failed job costs its own point and nothing else."""

from __future__ import annotations

import contextlib
import io
import json
import os
import logging
from pathlib import Path
from typing import Any, Callable

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from compresslab.sweeps.report import FAILED_FILE

log = logging.getLogger(__name__)

HtmlReport = Callable[..., "Path | None"]  # (sweep_dir, summary_dir, log_wandb=bool) -> the page written, or None


class SweepRDSummary(Callback):
    """Hydra's basic sweeper re-raises the first failed job's exception after the batch and never calls
    on_multirun_end, so a summary written only there is lost with one bad job. It is rewritten after each job
    instead (from every rd.json present), with the failed jobs and their error lines beside it.

    ``html_report(sweep_dir, summary_dir, log_wandb=...)`` writes the sweep's HTML page beside the summary: injected
    by conf/train.yaml (``reporting.beside.sweep_page``; reporting sits above sweeps), null for none."""

    def __init__(self, html_report: HtmlReport | None = None) -> None:
        self.html_report = html_report

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        writable_or_exit(Path(str(config.hydra.run.dir)), "run folder")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # The sweep folder exists before any job creates it (a study's SQLite file lives in it).
        writable_or_exit(Path(str(config.hydra.sweep.dir)), "sweep folder")

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.get("mode") != RunMode.MULTIRUN:
            return  # a single run has no sweep summary
        sweep_dir = Path(config.hydra.sweep.dir)
        if job_return.status == JobStatus.FAILED:
            record_failure(sweep_dir, config.hydra.runtime.output_dir, list(job_return.overrides or []),
                           job_return._return_value)
        write_summary(sweep_dir, log_wandb=False, quiet=True, so_far=True, metric=summary_metric(config),
                      html_report=self.html_report)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        write_summary(sweep_dir, log_wandb=config.get("logger", {}).get("wandb") is not None,
                      metric=summary_metric(config), html_report=self.html_report)
        if (sweep_dir / "optuna_study.json").exists() or (sweep_dir / "optuna.db").exists():  # a study: its report
            try:
                from compresslab.sweeps.report import write_sweep_report  # optuna, matplotlib: only when used

                print(f"sweep report: {write_sweep_report(sweep_dir)}", flush=True)
            except Exception as e:  # noqa: BLE001 - a report problem must not fail a finished study
                log.warning("sweep report not written: %s", e)


def writable_or_exit(folder: Path, what: str) -> None:
    """Create the output folder and write into it before Hydra does (its failure is a long traceback) and before any
    work: a read-only or full file system is one line and exit status 2. (SystemExit passes Hydra's error report.)"""
    import sys

    from compresslab.io.atomic import probe_writable

    try:
        probe_writable(folder)
    except OSError as e:
        print(f"config error: the {what} {folder} cannot be written ({e.strerror or e}): choose a writable folder "
              f"(paths.output_dir=..., hydra.run.dir=... or hydra.sweep.dir=...)", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def record_failure(sweep_dir: Path, job_dir: str, overrides: list[str], error: BaseException | Any) -> None:
    path = sweep_dir / FAILED_FILE
    failed = json.loads(path.read_text()) if path.exists() else []
    line = f"{type(error).__name__}: {error}".strip().splitlines()[0] if error is not None else "unknown error"
    # relative to the sweep folder: a committed sweep names no machine path
    failed.append({"job_dir": os.path.relpath(job_dir, sweep_dir), "overrides": overrides, "error": line[:500]})
    path.write_text(json.dumps(failed, indent=2))
    log.error("sweep job failed (%s): %s", " ".join(overrides), line)


def present_failures(sweep_dir: Path) -> list[dict[str, Any]]:
    """The failure record as it stands now: a point that failed and has since finished (a resubmission continued it)
    is no longer failed, and one point failed several times is listed once (its latest error)."""
    path = sweep_dir / FAILED_FILE
    try:
        failed = json.loads(path.read_text()) if path.exists() else []
    except ValueError:
        failed = []
    latest: dict[str, dict[str, Any]] = {}
    for f in failed:
        latest[f["job_dir"]] = f
    now = []
    for job_dir, f in latest.items():
        state = {}
        with contextlib.suppress(OSError, ValueError):
            state = json.loads((sweep_dir / job_dir / "run.json").read_text())
        if state.get("state") != "finished":
            now.append(f)
    if len(now) != len(failed) and path.exists():
        path.write_text(json.dumps(now, indent=2))
    return now


def summary_metric(config: DictConfig) -> str:
    """The quality axis of a sweep's summary: the one its loss optimises (MS-SSIM in dB for loss=msssim)."""
    return "ms-ssim-db-rgb" if str(config.get("loss", {}).get("metric", "mse")) == "msssim" else "psnr-rgb"


def html_report_from(config: DictConfig) -> HtmlReport | None:
    """The page writer the sweep callback is configured with (hydra.callbacks.rd_summary.html_report), for a caller
    that writes the summary without the callback (the SLURM launcher)."""
    from hydra.utils import instantiate

    spec = config.hydra.get("callbacks", {}).get("rd_summary", {}).get("html_report")
    return instantiate(spec) if spec is not None else None


def write_summary(sweep_dir: Path, log_wandb: bool = False, quiet: bool = False, so_far: bool = False,
                  metric: str = "psnr-rgb", html_report: HtmlReport | None = None) -> Path | None:
    """RD table/plot of every finished job under ``sweep_dir`` in <sweep>/rd_summary, plus failed_jobs.md, and
    the HTML page beside them where ``html_report`` is given (written after them: its failure loses nothing)."""
    try:
        from compresslab.rd.curves import summarize_runs
    except ImportError:  # evaluation stack not installed
        return None
    out = sweep_dir / "rd_summary"
    rd_files = sorted(sweep_dir.glob("*/rd.json"))
    failed = present_failures(sweep_dir)
    if not failed:
        (out / "failed_jobs.md").unlink(missing_ok=True)
    if failed:
        out.mkdir(parents=True, exist_ok=True)
        rows = "\n".join(f"| {' '.join(f['overrides'])} | {f['job_dir']} | {f['error'].replace('|', '/')} |"
                         for f in failed)
        (out / "failed_jobs.md").write_text(f"# Failed jobs ({len(failed)})\n\n| overrides | run dir | error |\n"
                                            f"|---|---|---|\n{rows}\n")
    if not rd_files:
        if not quiet:
            log.warning("sweep %s produced no rd.json files (is callbacks.rd_eval enabled?)", sweep_dir)
        return None
    try:
        with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():  # per-curve lines
            summary = summarize_runs([str(p.parent) for p in rd_files], out_dir=out, group=sweep_dir.name,
                                     log_wandb=log_wandb, metric=metric)
    except Exception as e:  # noqa: BLE001 - a summary problem must not turn a finished job into a failed one
        log.warning("sweep RD summary not written: %s", e)
        return None
    for note in summary["split_notes"]:  # runs of one model measured or trained differently: separate curves
        log.warning("sweep RD summary: %s", note)
    extra = f"; {len(failed)} failed job(s): {out / 'failed_jobs.md'}" if failed else ""
    page = None
    if html_report is not None:
        try:
            page = html_report(sweep_dir, out, log_wandb=log_wandb)
        except Exception as e:  # noqa: BLE001 - the page is a view of the summary, never a reason to lose it
            log.warning("sweep report.html not written: %s: %s", type(e).__name__, e)
    html = f", {page.name}" if page is not None else ""
    print(f"sweep RD summary ({len(rd_files)} runs{' so far' if so_far else ''}): {out}/rd_table.md, rd.png{html}"
          f"{extra}", flush=True)
    return out
