"""Writing files so that a kill, a full disk or a reader on another node never sees half of one, and checking that a
folder takes writes before any work is spent. Standard library only: light commands (``compresslab runs``) use it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path: str | os.PathLike, data: bytes | memoryview) -> None:
    """Write through a temporary file in the same folder, fsync, then ``os.replace``: a full disk or a kill leaves the
    previous file intact and no temporary one. The file gets the mode any other file of this user gets (umask;
    mkstemp alone makes it 0600). Errors are the OSError of the failed step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def probe_writable(folder: str | os.PathLike) -> None:
    """Create ``folder`` and write a byte into it; the OSError of the failed step (read-only, full, a file in the
    way) is raised. Done before work whose results would otherwise be lost at the end."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".write-test.{os.getpid()}"
    probe.write_bytes(b"x")
    probe.unlink()
