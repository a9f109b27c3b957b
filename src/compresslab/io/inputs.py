"""Input paths from the user are regular files or one clean error: a directory, FIFO, device or socket (or a symlink
to one) is refused before anything reads it, and reads are bounded, so ``/dev/zero`` cannot fill memory and a FIFO
cannot block a command before its own time limit applies."""

from __future__ import annotations

import os
import stat
from pathlib import Path


class InputFileError(ValueError):
    """An input path that is not a readable regular file (a ValueError: the CLI prints it as one line)."""


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def check_regular_file(path: str | os.PathLike, what: str = "file") -> os.stat_result:
    """``os.stat`` (which follows symlinks: a link is judged by its target) of a regular file, else an error that
    names the path and what it is. FileNotFoundError for a missing path, as callers already expect."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path} does not exist") from None
    except OSError as e:
        raise InputFileError(f"cannot read {what} {path}: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        link = f" (a symlink to {os.path.realpath(path)})" if Path(path).is_symlink() else ""
        raise InputFileError(f"{what} {path}{link} is {_kind(st.st_mode)}, not a regular file; refusing to read it")
    return st


def read_regular_file(path: str | os.PathLike, max_bytes: int, what: str = "file") -> bytes:
    """The bytes of a regular file of at most ``max_bytes``. Opened non-blocking (a FIFO swapped in after the check
    cannot block the open) and checked again on the open descriptor; at most ``max_bytes + 1`` bytes are read."""
    check_regular_file(path, what)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise InputFileError(f"cannot open {what} {path}: {e.strerror or e}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):  # replaced between the check and the open
            raise InputFileError(f"{what} {path} is {_kind(st.st_mode)}, not a regular file; refusing to read it")
        if st.st_size > max_bytes:
            raise InputFileError(f"{what} {path} is {st.st_size} bytes, more than the {max_bytes} bytes a {what} "
                                 f"can be; it is not one")
        try:
            data = f.read(max_bytes + 1)
        except OSError as e:  # EIO on a bad disk, ...
            raise InputFileError(f"cannot read {what} {path}: {e.strerror or e}") from None
    if len(data) > max_bytes:  # grew while read
        raise InputFileError(f"{what} {path} is more than the {max_bytes} bytes a {what} can be; it is not one")
    return data
