"""``compresslab runs [DIR] [--where key=value ...]``: the run index, read from each run's own ``run.json`` (written
atomically at start, checkpoint and end), so it is right on a cluster's shared file system too. Imports no torch."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

COLUMNS = ("id", "state", "model", "lambda", "seed", "steps", "bpp", "psnr", "config_hash", "commit", "folder")


def collect(root: Path) -> list[dict[str, Any]]:
    """One row per run.json under ``root`` (a run folder itself, or any folder above runs)."""
    from compresslab.training.runstore import LOCK_FILE, STATE_FILE, read_json, stale_reason

    files = [root / STATE_FILE] if (root / STATE_FILE).is_file() else sorted(root.rglob(STATE_FILE))
    rows = []
    for f in files:
        doc = read_json(f)
        if doc is None:
            rows.append({"id": "?", "state": "unreadable", "folder": str(f.parent)})
            continue
        state = doc.get("state")
        if state == "running":  # a run killed outright (SIGKILL, node failure) never wrote its end
            held = read_json(f.parent / LOCK_FILE)
            why = stale_reason(held) if held else "no process holds its folder"
            if why:
                state = "interrupted"
                doc["reason"] = f"killed without a checkpoint of its end ({why})"
        git = read_json(f.parent / "git.json") or {}
        rd = doc.get("rd") or {}
        rows.append({**doc, "state": state, "folder": str(f.parent),
                     "steps": f"{doc.get('global_step', 0)}/{doc.get('max_steps')}",
                     "bpp": rd.get("bpp"), "psnr": rd.get("psnr-rgb"),
                     "commit": (git.get("commit") or "")[:10] + ("+dirty" if git.get("dirty") else "")})
    return rows


def lookup(row: dict[str, Any], key: str) -> Any:
    node: Any = row
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            config = row.get("config") or {}
            return lookup(config, key) if node is row and config else None
        node = node[part]
    return node


def matches(row: dict[str, Any], where: list[str]) -> bool:
    for cond in where:
        key, _, want = cond.partition("=")
        got = lookup(row, key)
        try:
            if float(got) == float(want):
                continue
        except (TypeError, ValueError):
            pass
        if str(got) != want:
            return False
    return True


def cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def cmd_runs(args) -> int:
    root = Path(args.dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder: give the folder that holds your runs (default outputs/)")
    bad = [w for w in args.where if "=" not in w]
    if bad:
        raise ValueError(f"--where {bad[0]}: expected key=value (e.g. --where model=factorized lambda=0.0067 "
                         f"state=finished)")
    rows = [r for r in collect(root) if matches(r, args.where)]
    if args.json:
        json.dump([{k: r.get(k) for k in (*COLUMNS, "reason", "segments", "totals")} for r in rows], sys.stdout, indent=2)
        print()
        return 0
    if not rows:
        print(f"no runs under {root}" + (f" with {' '.join(args.where)}" if args.where else ""))
        return 0
    table = [[cell(r.get(c)) for c in COLUMNS] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(COLUMNS)]
    print("  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths)))
    for t, r in zip(table, rows):
        print("  ".join(x.ljust(w) for x, w in zip(t, widths)).rstrip())
        if r.get("reason") and r.get("state") in ("failed", "interrupted"):
            print(f"    {r['state']}: {r['reason']}")
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("runs", help="list runs (id, state, model, λ, seed, steps, RD point, config hash, commit) from "
                                    "their run.json files")
    p.add_argument("dir", nargs="?", default="outputs", help="a folder holding runs, or one run folder (default outputs)")
    p.add_argument("--where", nargs="*", default=[], metavar="KEY=VALUE",
                   help="keep runs whose field or config key equals the value (model=factorized lambda=0.0067 "
                        "state=finished data.patch_size=64)")
    p.add_argument("--json", action="store_true", help="the rows as JSON")
    p.set_defaults(func=cmd_runs)
