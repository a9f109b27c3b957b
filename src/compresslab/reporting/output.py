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


def shared_plotly_js(folder: Path, page: Path) -> str:
    """The one copy of plotly.js that pages committed side by side load (4.8 MB each if inlined): written once as
    ``folder/plotly-<version>.min.js`` (the version in the name: a page built with another plotly never loads a
    script it was not built for); the URL a page at ``page`` loads it by."""
    from plotly.offline import get_plotlyjs, get_plotlyjs_version

    if not folder.parent.is_dir():
        raise FileNotFoundError(f"--shared-js {folder}: its folder {folder.parent} does not exist: create it or give "
                                "another folder")
    js = folder / f"plotly-{get_plotlyjs_version()}.min.js"
    text = get_plotlyjs()
    if js.exists():
        if js.read_text(encoding="utf-8") != text:
            raise ValueError(f"{js} is not plotly.js {get_plotlyjs_version()} as the installed plotly ships it: "
                             "delete it and rerun to write it again")
    else:
        folder.mkdir(exist_ok=True)
        atomic_write_text(js, text, force=False)
    return os.path.relpath(os.path.abspath(js), os.path.abspath(page.parent)).replace(os.sep, "/")
