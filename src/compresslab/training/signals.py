"""Stopping on a signal without doing anything inside the signal handler.

A handler may run between any two bytecodes: mid-backward, mid-collective, mid-checkpoint-write. Lightning's own SLURM
auto-requeue saves its checkpoint inside the handler, which deadlocks 2-rank DDP now and then (rank 0 in an allgather
from the handler, rank 1 in the gradient all-reduce). Here the handler only records the signal; ``StopAtStepBoundary``
reads the record after each optimizer step, the ranks agree on it with one all-reduce, all of them save one checkpoint
together (atomically: ``AtomicCheckpointIO``) and training stops (compresslab.training.stopping). A signal that arrives during start-up, data set-up
or checkpoint restore is kept and honoured before the first step (nothing to save: the folder's state is current).

SIGINT twice is the user insisting: the second one raises KeyboardInterrupt at once, as Python's default does."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

DEFAULT_SIGNALS = ("SIGINT", "SIGTERM", "SIGUSR1")
_received: list[tuple[str, float]] = []  # (name, time) in arrival order, for this process


def _handler(signum: int, frame: Any) -> None:
    name = signal.Signals(signum).name
    _received.append((name, time.time()))
    if name == "SIGINT" and sum(1 for n, _ in _received if n == "SIGINT") >= 2:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        raise KeyboardInterrupt
    # os.write, not print/logging: those may be mid-write in the interrupted frame (reentrant call error)
    msg = (f"\n{name} received: training stops after the current step and saves a checkpoint"
           + (" (Ctrl-C again to abort without saving)" if name == "SIGINT" else "") + "\n")
    try:
        os.write(2, msg.encode())
    except OSError:
        pass


def install(names: list[str] | tuple[str, ...] = DEFAULT_SIGNALS) -> dict[signal.Signals, Any]:
    """Record these signals from now on (main thread only: Python delivers signals there). Returns the handlers it
    replaced, for ``restore``."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}
    done: dict[signal.Signals, Any] = {}
    for name in names:
        sig = getattr(signal, str(name), None)
        if not isinstance(sig, signal.Signals):
            from compresslab.errors import ConfigError

            raise ConfigError(f"signals: {name} is not a signal of this platform (e.g. SIGUSR1, SIGTERM, SIGINT)")
        done[sig] = signal.signal(sig, _handler)
    return done


def restore(previous: dict[signal.Signals, Any]) -> None:
    import threading

    if threading.current_thread() is threading.main_thread():
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def received() -> list[str]:
    return [n for n, _ in _received]


def reset() -> None:
    """Forget the signals a stopped run has honoured (the next run in this process starts clean)."""
    _received.clear()


def act_as_default(names: tuple[str, ...] = ("SIGTERM", "SIGINT")) -> None:
    """For a process that trains nothing (a sweep's submitting process waiting on its SLURM jobs): a recorded signal
    would never be honoured there (a `kill` of it went unheard), so these act as by default again, and one recorded
    before now is acted on now. The jobs it submitted run on; the same command later resubmits only unfinished points."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    got = received()
    for name in names:
        sig = getattr(signal, name)
        signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)
    if "SIGINT" in names and "SIGINT" in got:
        raise KeyboardInterrupt
    for name in names:
        if name in got:
            os.kill(os.getpid(), getattr(signal, name))
