"""`compresslab report --watch` ends on Ctrl-C or SIGTERM even when Python swallows the KeyboardInterrupt (one raised
while a finalizer runs is printed as "Exception ignored" and lost); the end-to-end watcher is in test_report_html."""

from __future__ import annotations

import os
import signal

import pytest

from compresslab.reporting import watch as watch_mod


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_whose_interrupt_is_swallowed_still_ends_the_watch(tmp_path, monkeypatch, sig):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "rd.json").write_text("{}")
    builds, sleeps = [], []

    def build() -> str:
        builds.append(1)
        try:  # what a finalizer running at that moment does to the interrupt
            os.kill(os.getpid(), sig)
        except KeyboardInterrupt:
            pass
        return "<html></html>"

    def sleep(s: float) -> None:
        sleeps.append(s)
        assert len(sleeps) < 5, "the watcher went on looking after the signal"

    monkeypatch.setattr(watch_mod.time, "sleep", sleep)
    before = signal.getsignal(sig)
    assert watch_mod.watch([str(tmp_path)], tmp_path / "p.html", build, "t", interval=0.01) == 0
    assert builds == [1] and len(sleeps) == 1 and (tmp_path / "p.html").read_text() == "<html></html>"
    assert signal.getsignal(sig) is before  # the caller's handlers are back
