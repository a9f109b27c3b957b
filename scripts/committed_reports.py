"""Rebuild the committed HTML reports (docs/report.md, "Committed reports") from the repository root, and record each
page's size and build time in experiments/report_assets/pages.json (the numbers the docs show, never typed).

    .venv/bin/python scripts/committed_reports.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

SHARED_JS = "experiments/report_assets"  # the one plotly.js every committed page loads by relative path
PAGES = {  # page -> the results it shows
    "experiments/rd_cpu_ctx/report.html": "experiments/rd_cpu_ctx/runs",
    "experiments/adaptive/cpu_bases/report.html": "experiments/adaptive/cpu_bases/runs",
}
RECORD = Path(SHARED_JS) / "pages.json"


def commands() -> list[list[str]]:
    return [["compresslab", "report", src, "-o", page, "--shared-js", SHARED_JS, "--force"]
            for page, src in PAGES.items()]


def main() -> int:
    from compresslab.provenance import cpu_model

    if not Path("experiments").is_dir():
        sys.exit("run from the repository root (no experiments/ folder here)")
    pages = []
    for cmd in commands():
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "compresslab", *cmd[1:]], check=True)
        page = Path(cmd[cmd.index("-o") + 1])
        pages.append({"page": str(page), "command": " ".join(cmd), "kilobytes": round(page.stat().st_size / 1e3, 1),
                      "build_s": round(time.perf_counter() - t0, 1)})
    (js,) = Path(SHARED_JS).glob("plotly-*.min.js")
    RECORD.write_text(json.dumps({
        "written_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": cpu_model(),
        "build_s": "the whole command (Python start, imports, page) as timed by this script",
        "pages": pages, "plotly_js": {"path": str(js), "kilobytes": round(js.stat().st_size / 1e3, 1)}}, indent=2)
        + "\n")
    print(f"recorded {RECORD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
