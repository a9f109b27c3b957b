"""Where a report goes: refused before any work when it exists (without --force) or its folder cannot take it, and
written atomically (a reader, or a browser reloading, never sees half a page)."""

from __future__ import annotations

import os
import time
from pathlib import Path


def check_output(out: Path, force: bool) -> None:
    """Refuse before any work: an existing report (without --force) or a folder that cannot take the file."""
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists: pass --force to replace it, or choose another -o path")
    if out.is_dir():
        raise IsADirectoryError(f"{out} is a folder: give a file path such as {out}/report.html")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(f"{parent} is not an existing folder: create it or choose another -o path")
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"{parent} is not writable: choose another -o path")


def atomic_write_text(out: Path, text: str, force: bool = True) -> int:
    """Write atomically (a reader, or a browser reloading, never sees half a page); the bytes written."""
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        if out.exists() and not force:  # appeared while we built the page
            raise FileExistsError(f"{out} exists: pass --force to replace it, or choose another -o path")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return len(text.encode())
