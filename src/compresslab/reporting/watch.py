"""`compresslab report --watch`: rebuild the page whenever a result file under the inputs appears or changes, so a
sweep can be followed from a browser (the page reloads itself). A file that cannot be read yet (half-written,
corrupt) is named in the page and on stderr, and the next change rebuilds; the watcher never dies of it."""

from __future__ import annotations

import html
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

WATCHED = ("rd.json", "metrics.csv", "rd_live.jsonl", "optuna.db", "report.md")


def signature(inputs: Sequence[str]) -> tuple:
    """(path, size, mtime) of every file a report reads under ``inputs``: it changes when any of them does."""
    seen = []
    for spec in inputs:
        p = Path(spec)
        files = [p] if p.is_file() else [f for name in WATCHED for f in p.rglob(name)] if p.is_dir() else []
        for f in files:
            try:
                st = f.stat()
            except OSError:  # removed between the listing and the stat
                continue
            seen.append((str(f), st.st_size, st.st_mtime_ns))
    return tuple(sorted(seen))


def error_page(title: str, error: str, refresh_s: int) -> str:
    return auto_refresh(f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title></head><body><h1>{html.escape(title)}</h1>'
            f'<p class="error" style="color:#a33">Not rebuilt: {html.escape(error)}</p><p>The page is rebuilt when '
            f"the files change (checked every few seconds).</p></body></html>\n", refresh_s)


def watch(inputs: Sequence[str], out: Path, build: Callable[[], str], title: str, interval: float = 2.0,
          refresh_s: int = 30, max_s: float | None = None) -> int:
    """Rebuild ``out`` from ``build()`` (the page's HTML) at every change of the inputs' files; until Ctrl-C or SIGTERM
    (or ``max_s`` seconds). One line per rebuild, or per error, on stdout / stderr."""
    from compresslab.reporting.output import atomic_write_text

    start, last = time.monotonic(), None
    stop: list[int] = []

    def on_signal(signum, frame):  # noqa: ARG001
        # the flag too: a KeyboardInterrupt raised while a finalizer runs (gc during a rebuild) is printed and
        # swallowed by Python, and the loop would watch on after Ctrl-C; the flag ends it at the next look
        stop.append(signum)
        raise KeyboardInterrupt

    main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
    try:
        while not stop and (max_s is None or time.monotonic() - start < max_s):
            sig = signature(inputs)
            if sig != last:
                last = sig
                t0 = time.perf_counter()
                try:
                    text = build()
                    print(f"{time.strftime('%H:%M:%S')} rebuilt {out} ({len(sig)} files, "
                          f"{time.perf_counter() - t0:.1f} s)", flush=True)
                except Exception as e:  # noqa: BLE001 - a watcher outlives any one bad state of the files
                    # (half-written rd.json, a locked optuna.db mid-write): named on the page, the next change retries
                    line = (str(e).splitlines() or [type(e).__name__])[0]
                    print(f"compresslab report: {time.strftime('%H:%M:%S')} not rebuilt: {line}", file=sys.stderr,
                          flush=True)
                    text = error_page(title, line, refresh_s)
                atomic_write_text(out, text)
            time.sleep(interval)
    except KeyboardInterrupt:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def auto_refresh(page_html: str, refresh_s: int) -> str:
    """The page with a reload every ``refresh_s`` seconds (a browser left open follows the sweep; 0: never)."""
    if refresh_s <= 0:
        return page_html
    return page_html.replace('<meta charset="utf-8">',
                             f'<meta charset="utf-8"><meta http-equiv="refresh" content="{refresh_s}">', 1)


__all__ = ["auto_refresh", "error_page", "signature", "watch"]
