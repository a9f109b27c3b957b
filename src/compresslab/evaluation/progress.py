"""The per-image progress line of an evaluation, on stderr (stdout keeps the results):

    [3/24] kodim03.png  0.4321 bpp  31.20 dB  decode 41.2 s  ETA 07:12

One line per image in a log (a training run's, a SLURM job's), one line rewritten in place on a terminal. The ETA is
the images left times the wall time per finished image so far, so it already counts the images decoded in parallel.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Mapping, TextIO


def mmss(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    return f"{s // 60:02d}:{s % 60:02d}" if s < 6000 else f"{s // 3600}h{s % 3600 // 60:02d}"


class Progress:
    def __init__(self, total: int, stream: TextIO | None = None, clock=time.monotonic):
        self.total, self.done = int(total), 0
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.start = clock()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def line(self, row: Mapping[str, Any]) -> str:
        left = self.total - self.done
        eta = (self.clock() - self.start) / self.done * left if self.done else float("nan")
        return (f"[{self.done}/{self.total}] {row['name']}  {row['bpp']:.4f} bpp  {row['psnr-rgb']:.2f} dB  "
                f"decode {row['decoding_time']:.1f} s  ETA {mmss(eta)}")

    def update(self, row: Mapping[str, Any]) -> None:
        self.done += 1
        text = self.line(row)
        if self.tty:  # one line, rewritten; a newline after the last image
            self.stream.write("\r\x1b[K" + text + ("\n" if self.done == self.total else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End an in-place line that an error interrupted, so the error starts on its own line."""
        if self.tty and 0 < self.done < self.total:
            self.stream.write("\n")
            self.stream.flush()
