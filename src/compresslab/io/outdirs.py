"""Where a driver, the pipeline or a reproduction writes: a new folder by default, never one that holds results;
the published folders (``experiments/``, ``benchmarks/results/``, committed) only with ``--publish``. Reading
published results (a reproduction reusing them, a step's input) is always allowed."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

from compresslab.errors import ConfigError

OUTPUTS = Path("outputs")
PUBLISHED = ("experiments", "benchmarks/results")   # relative to where the command runs (a clone's root)


def run_id() -> str:
    """UTC time to the second plus 24 random bits: two commands started in the same second still differ."""
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(3)}"


def new_dir(*parts: str, create: bool = True) -> Path:
    """``outputs/<parts…>/<run id>/``, created exclusively (create=False: the name a dry run shows)."""
    base = OUTPUTS.joinpath(*parts)
    if not create:
        return base / "<new run id>"
    for _ in range(10):
        path = base / run_id()
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:  # the same second and the same 24 bits: draw again
            continue
    raise ConfigError(f"could not create a new folder under {base}")


def published(path: Path | str) -> str | None:
    """The published folder ``path`` lies in (``experiments`` …), or None."""
    here = Path.cwd().resolve()
    p = Path(path).resolve()
    for root in PUBLISHED:
        if p.is_relative_to(here / root):
            return root
    return None


def guard(path: Path | str, publish: bool, flag: str = "--out") -> Path:
    """Refuse (one line) to write into a published folder without ``--publish``."""
    root = published(path)
    if root is not None and not publish:
        raise ConfigError(f"{flag} {path} is inside {root}/, which holds published results: a command writes there "
                          f"only with --publish (or give a folder outside {root}/)")
    return Path(path)


def output_dir(out: str | None, publish: bool, published_default: Path | str, *parts: str,
               dry: bool = False) -> Path:
    """--publish: ``out`` or the published default, updated in place; --out: that folder (never a published one
    without --publish); neither: a new ``outputs/<parts…>/<run id>/``."""
    if publish:
        return Path(out) if out else Path(published_default)
    if out:
        return guard(out, publish)
    return new_dir(*parts, create=not dry)


def add_output_args(ap, published_default: str, what: str = "results") -> None:
    ap.add_argument("--out", default=None,
                    help=f"folder for the {what} (default: a new outputs/…/<time>-<id>/; never inside experiments/ "
                         f"or benchmarks/results/ without --publish)")
    ap.add_argument("--publish", action="store_true",
                    help=f"update the published folder ({published_default}, or --out) in place")
