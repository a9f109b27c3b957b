"""The scripts beside the package (benchmarks/, scripts/, experiments/) are not imported by any test that runs them
all; a moved function broke one at import (cross_device_decode's resolve_data_root). Every `from compresslab... import
name` in them must name something that exists."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from conftest import REPO

SCRIPTS = sorted(p for d in ("benchmarks", "scripts", "experiments") for p in (REPO / d).rglob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_compresslab_name_a_script_imports_exists(script: Path):
    missing = []
    for node in ast.walk(ast.parse(script.read_text(), str(script))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "compresslab":
            module = importlib.import_module(node.module)
            for alias in node.names:
                if alias.name != "*" and not hasattr(module, alias.name):
                    try:  # a submodule: from compresslab.evaluation import metrics
                        importlib.import_module(f"{node.module}.{alias.name}")
                    except ModuleNotFoundError:
                        missing.append(f"line {node.lineno}: {node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "compresslab":
                    importlib.import_module(alias.name)
    assert not missing, f"{script.relative_to(REPO)} imports names that do not exist: {missing}"
