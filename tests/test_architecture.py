"""The package's shape: the import layers of pyproject.toml ([tool.importlinter]) hold, no module imports another
that imports it back (also inside one package), and the model contract refuses a broken model where it is
registered, in one line."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(cwd: Path, src: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--config", str(cwd / "pyproject.toml"), "--no-cache"], cwd=cwd,
                          env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True)


def test_the_layers_hold():
    r = _lint(ROOT, ROOT / "src")
    assert r.returncode == 0 and "1 kept, 0 broken" in r.stdout, r.stdout[-3000:] + r.stderr[-2000:]


def test_an_upward_function_local_import_breaks_the_contract(tmp_path):
    # the checker must see imports inside functions (where the old cycles hid), not only the module's head
    shutil.copytree(ROOT / "src" / "compresslab", tmp_path / "src" / "compresslab",
                    ignore=shutil.ignore_patterns("__pycache__", "anchor_data"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with open(tmp_path / "src" / "compresslab" / "io" / "inputs.py", "a") as f:
        f.write("\n\ndef _late():\n    from compresslab.training.run import run  # noqa: F401\n")
    r = _lint(tmp_path, tmp_path / "src")
    assert r.returncode != 0 and "BROKEN" in r.stdout and "compresslab.io.inputs -> compresslab.training.run" in r.stdout, \
        r.stdout[-3000:]


def test_no_import_cycles_between_modules():
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("compresslab")
    mods = sorted(m for m in graph.modules if not m.endswith("__main__"))
    # Tarjan's strongly connected components over module -> directly imported module (package __init__s included)
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for m in mods:
        if m not in index:
            visit(m)
    assert not cycles, f"import cycles: {cycles}"
