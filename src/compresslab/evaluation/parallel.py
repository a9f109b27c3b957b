"""Images evaluated at once, in worker processes (evaluator.evaluate_model's ``workers``).

Processes, not threads: the autoregressive decoders (mbt2018, cheng2020) and MSP's run a Python loop per latent
position, which holds the GIL, so threads of one process decode them one at a time. The workers are forked (the model
is the parent's, copy-on-write: nothing is pickled but file names in and result rows out, and a class registered only
in the calling process, a test's or a plugin's, is there too) and run torch with one intra-op thread each, as
CompressAI's eval_model and torch's DataLoader workers do (one thread also never enters an OpenMP pool a fork broke).
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

Job = Callable[[Any, Path], dict[str, Any]]  # (model, image path) -> the image's row

_WORKER: tuple[Any, Job] | None = None  # (model, job) in a worker process


def can_fork(model) -> bool:
    """Forking is safe for a CPU model only (a CUDA context does not survive a fork)."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return False
    return all(t.device.type == "cpu" for t in list(model.parameters()) + list(model.buffers()))


def _init(model, job: Job) -> None:
    global _WORKER
    torch.set_num_threads(1)
    _WORKER = (model, job)


def _run(path: Path) -> dict[str, Any]:
    model, job = _WORKER
    return job(model, path)


def map_images(model, paths: Sequence[Path], job: Job, workers: int,
               on_done: Callable[[dict[str, Any]], None]) -> list[dict[str, Any]]:
    """``job(model, path)`` for every path in ``workers`` processes; ``on_done(row)`` in the parent as each image
    finishes (completion order); returns the rows in the paths' order. The first failure stops the rest: its
    exception is raised with the image named (a CodecMismatchError names it itself); a worker that dies (killed for
    memory, a crash in the C++ entropy coder) is reported with the images it was evaluating."""
    rows: list[dict[str, Any] | None] = [None] * len(paths)
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"), initializer=_init,
                               initargs=(model, job))  # fork: initargs are inherited, not pickled
    ok = False
    try:
        pending: dict[Future, int] = {pool.submit(_run, p): i for i, p in enumerate(paths)}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in sorted(finished, key=pending.get):
                i = pending.pop(fut)
                try:
                    rows[i] = fut.result()
                except BrokenProcessPool:
                    names = ", ".join(sorted({paths[i].name, *(paths[j].name for f, j in pending.items()
                                                                if f.running())}))
                    raise RuntimeError(f"an evaluation worker process died while evaluating {names} (killed for "
                                       f"memory, or a crash in the entropy coder); rerun with --workers 1 to see "
                                       f"which image and why") from None
                except Exception as e:
                    if paths[i].name not in str(e):
                        e.add_note(f"while evaluating {paths[i]}")
                    raise
                on_done(rows[i])
        ok = True
    finally:
        if not ok:  # an error: the other images' decodes (minutes for a context model) are not waited for
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
    return rows  # type: ignore[return-value]
