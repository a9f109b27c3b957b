"""The lock holds one exact version of each package for every Python the project claims (markers where they differ),
and each Python that scripts/check_python.sh tests has its committed record."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
PYTHONS = ("3.11", "3.12", "3.13")


def lock_for(python: str) -> dict[str, str]:
    env = {**default_environment(), "python_version": python, "python_full_version": f"{python}.0"}
    pins: dict[str, str] = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        name = canonicalize_name(req.name)
        spec = str(req.specifier)
        assert spec.startswith("==") and "," not in spec, f"constraints.txt: {line!r} is not one exact version"
        assert name not in pins, f"constraints.txt pins {name} twice for Python {python}"
        pins[name] = spec[2:]
    return pins


@pytest.mark.parametrize("python", PYTHONS)
def test_the_lock_pins_each_package_once_per_python(python):
    pins = lock_for(python)
    for must in ("torch", "numpy", "compressai", "lightning", "wheel"):
        assert must in pins, f"constraints.txt has no {must} for Python {python}"
    if python >= "3.12":  # torch imports setuptools at run time; 3.12's venv no longer ships it
        assert "setuptools" in pins
    if python >= "3.13":  # numpy 1.x has no 3.13 build
        assert int(pins["numpy"].split(".")[0]) >= 2


@pytest.mark.parametrize("python", ["3.12", "3.13"])
def test_each_tested_python_has_its_record(python):
    record = REPO / "benchmarks" / "results" / f"check_python_{python}.md"
    assert record.exists(), f"run `bash scripts/check_python.sh {python}` and commit {record.relative_to(REPO)}"
    text = record.read_text()
    assert re.search(rf"Installed: Python {re.escape(python)}\.\d+ \| torch ", text), text[:500]
    assert re.search(r"at commit [0-9a-f]{7,}", text) and "Fast tests" in text and "Main job" in text
