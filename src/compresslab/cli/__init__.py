"""``compresslab`` console entry point: train, evaluate, export, compress, decompress, anchors, bd-rate, rd, report,
runs, results, reproduce, pipeline, sweep-report, make-shards, fetch, download-kodak.

Errors the user can fix (missing files, corrupt checkpoints, bad containers) exit with status 2 and one line that
names the problem, instead of a traceback.
"""

from __future__ import annotations

import argparse
import sys

COMMAND_MODULES = ("evaluate", "curves", "results", "data", "report", "runs", "models")  # compresslab.cli.<module>.add_commands(sub)


def build_parser() -> argparse.ArgumentParser:
    from importlib import import_module

    p = argparse.ArgumentParser(prog="compresslab", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("train", help="train a model: Hydra overrides, as train.py (compresslab train model=factorized "
                                 "lambda=0.0067; --help lists the config groups)")
    for name in COMMAND_MODULES:
        import_module(f"compresslab.cli.{name}").add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:  # the Hydra app takes its own overrides (`compresslab train model=adaptive lambda=0.01`)
        from compresslab.app import main as train_main

        train_main(argv[1:])
        return 0
    if argv[:1] == ["pipeline"]:  # the driver parses its own flags: argparse's REMAINDER refuses a leading --help
        from compresslab.cli.results import cmd_pipeline

        args = argparse.Namespace(cmd="pipeline", rest=argv[1:], func=cmd_pipeline)
    else:
        args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # `compresslab anchors | head`: the reader left; not an error of ours
        sys.stderr.close()
        return 0
    except Exception as e:  # noqa: BLE001 - only the user-fixable kinds below are caught; the rest re-raised
        if not isinstance(e, user_errors()):
            raise
        print(f"compresslab {args.cmd}: error: {e}", file=sys.stderr)
        return 2


# The errors a user can fix, by module. A light command (bd-rate, rd, runs) must not import torch just to name the
# exceptions it could catch: an exception class whose module was never imported cannot have been raised.
USER_ERRORS = {"compresslab.io.checkpoints": ("CheckpointError",), "compresslab.bitstream.container": ("ContainerError",),
               "compresslab.data.images": ("DataLayoutError", "ImageDecodeError"),
               "compresslab.rd.anchors": ("AnchorError",), "compresslab.errors": ("ConfigError",)}


def user_errors() -> tuple[type[BaseException], ...]:
    kinds: list[type[BaseException]] = [FileNotFoundError, FileExistsError, ValueError, OSError]  # OSError: full disk
    for module, names in USER_ERRORS.items():
        if module in sys.modules:
            kinds += [getattr(sys.modules[module], n) for n in names]
    return tuple(kinds)

if __name__ == "__main__":
    sys.exit(main())
