"""report.html beside the Markdown the project already writes: a sweep's rd_summary (the Hydra callback
``sweeps.hydra_callbacks.SweepRDSummary`` is handed ``sweep_page`` by conf/train.yaml: sweeps sit below this
package), ``compresslab reproduce`` and ``compresslab pipeline``. A page that cannot be built is one log line, and
the Markdown beside it stays as written."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

log = logging.getLogger(__name__)

PUBLISHED_JS = Path("experiments") / "report_assets"  # the one plotly.js the committed pages under experiments/ load
REPORT = "report.html"


def write_beside(inputs: Sequence[str | os.PathLike], out: Path, anchor: str = "kodak/vtm", title: str | None = None,
                 shared_js: Path | None = None, log_wandb: bool = False, group: str | None = None) -> Path | None:
    """Build the page of ``inputs`` at ``out`` (replacing the previous one: it is rewritten as results come), as
    ``compresslab report INPUTS -o OUT [--shared-js DIR]`` would; None, with one warning line, if it fails."""
    from compresslab.reporting.page import report

    try:
        path, _, _ = report([str(i) for i in inputs], out, force=True, anchor=anchor, title=title,
                            shared_js=shared_js)
    except Exception as e:  # noqa: BLE001 - a report problem must never cost the results or the Markdown
        log.warning("%s not written: %s: %s", out, type(e).__name__, str(e).strip().splitlines()[0] if str(e) else "")
        return None
    if log_wandb:
        _log_wandb(path, group or out.parent.name)
    return path


def sweep_page(sweep_dir: Path, summary_dir: Path, log_wandb: bool = False) -> Path | None:
    """The sweep's page (its runs, live RD files, training curves and study) beside its rd_summary Markdown."""
    return write_beside([sweep_dir], summary_dir / REPORT, title=f"Sweep {sweep_dir.name}", log_wandb=log_wandb,
                        group=sweep_dir.name)


def _log_wandb(page: Path, group: str) -> None:
    """The same page as a W&B HTML panel, beside the RD summary's run of the same group (offline unless WANDB_MODE
    says otherwise, as every W&B writer here); a failure is one line."""
    try:
        import wandb

        from compresslab.wandb_mode import wandb_mode

        wandb_mode()
        run = wandb.init(project="compresslab", group=group, job_type="report", name=f"report-{group}",
                         dir=str(page.parent))
        run.log({"report": wandb.Html(page.read_text(encoding="utf-8"), inject=False)})
        run.finish()
    except Exception as e:  # noqa: BLE001 - W&B is a copy of the page, never a reason to lose it
        log.warning("report not logged to W&B: %s: %s", type(e).__name__, e)
