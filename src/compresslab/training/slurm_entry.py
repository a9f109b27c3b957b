"""What a SLURM job of our launcher runs first: ``python -m compresslab.training.slurm_entry -u -m
submitit.core._submit <folder>`` (the launcher sets submitit's ``python`` to this). It records the pre-emption
signals from the interpreter's first tenth of a second, before submitit, Hydra, torch and Lightning load (seconds),
so a warning that arrives as the job starts is honoured once the run can save, instead of ending the job by the
signal's default action (FAILED, not requeued). Then it runs submitit's job entry point unchanged."""

from __future__ import annotations

import runpy
import sys

from compresslab.training.signals import DEFAULT_SIGNALS, install


def main(argv: list[str]) -> None:
    install(DEFAULT_SIGNALS)
    args = list(argv)
    if args[:1] == ["-u"]:  # submitit asks for unbuffered output: its log files are read while the job runs
        args = args[1:]
        sys.stdout.reconfigure(write_through=True)  # type: ignore[union-attr]
        sys.stderr.reconfigure(write_through=True)  # type: ignore[union-attr]
    if len(args) < 2 or args[0] != "-m":
        raise SystemExit(f"usage: python -m compresslab.training.slurm_entry [-u] -m <module> [args]; got {argv}")
    sys.argv = [args[1], *args[2:]]
    runpy.run_module(args[1], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
