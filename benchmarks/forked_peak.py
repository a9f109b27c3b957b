"""One measurement the decode benchmarks share: a function run in a forked child, with its wall time and its peak
resident memory above the child's own at the start (VmHWM reset through /proc/self/clear_refs). Linux only."""

from __future__ import annotations

import json
import os
import time
from typing import Callable


def status_bytes(key: str) -> int:
    """A /proc/self/status memory field (VmRSS, VmHWM) in bytes."""
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith(key + ":"))


def in_forked_child(fn: Callable[[], dict], refused: type[BaseException] | tuple = ()) -> dict:
    """fn()'s dict (or {"outcome": "refused: ..."} when it raises ``refused``) with ``seconds`` and ``peak_mb``."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # VmHWM := VmRSS
        base, t0 = status_bytes("VmRSS"), time.perf_counter()
        try:
            out = dict(fn())
        except refused as e:
            out = {"outcome": "refused: " + str(e).split(": ", 1)[-1][:100]}
        out.update(seconds=time.perf_counter() - t0, peak_mb=(status_bytes("VmHWM") - base) / 2**20)
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    buf = b""
    while chunk := os.read(r, 4096):
        buf += chunk
    os.waitpid(pid, 0)
    return json.loads(buf)
