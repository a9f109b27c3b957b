"""A pipeline recipe (``conf/pipeline/<name>.yaml``) as objects: its stages, queues and models, λ ladders read from
experiment files, and where each stage's runs live (``run_dir``; ``done.json`` marks one finished)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from compresslab.conf import CONF_DIR
from compresslab.errors import ConfigError

MODES = ("single", "sweep", "per_lambda")
TEMPLATE = re.compile(r"\{(?:steps:)?([A-Za-z_]\w*)(?::([0-9.]+))?\}")


@dataclass
class Stage:
    name: str
    overrides: list[str]
    mode: str = "single"
    lambdas: list[float] | None = None
    launcher: dict[str, Any] | None = None   # {name: submitit_local, <its keys>}; dropped when --set picks one


@dataclass
class Recipe:
    name: str
    work: Path
    out: Path
    queues: list[list[str]]
    models: dict[str, list[str]]
    stages: list[Stage]
    publish: dict[str, Any] = field(default_factory=dict)
    common: list[str] = field(default_factory=list)


def slug(model: str) -> str:
    return model.replace("/", "_")


def experiment_ladder(experiment: str) -> list[float]:
    """The λ ladder of conf/experiment/<experiment>.yaml (hydra.sweeper.params.lambda), following its defaults."""
    name = experiment
    while name:
        path = CONF_DIR / "experiment" / f"{name}.yaml"
        if not path.is_file():
            raise ConfigError(f"experiment {name!r} (conf/experiment/{name}.yaml) does not exist")
        doc = OmegaConf.load(path)
        value = OmegaConf.select(doc, "hydra.sweeper.params.lambda")
        if value is not None:
            return [float(v) for v in str(value).split(",")]
        name = next((d for d in doc.get("defaults", []) if isinstance(d, str) and d != "_self_"), None)
    raise ConfigError(f"experiment {experiment!r} has no hydra.sweeper.params.lambda ladder; give the stage lambdas")


def load_recipe(name: str) -> Recipe:
    path = Path(name) if name.endswith(".yaml") else CONF_DIR / "pipeline" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (CONF_DIR / "pipeline").glob("*.yaml"))
        raise ConfigError(f"no pipeline {name!r}: known {', '.join(known)} (conf/pipeline/<name>.yaml), or a .yaml path")
    doc = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    stages = []
    for s in doc.get("stages") or []:
        unknown = set(s) - {"name", "overrides", "mode", "lambdas", "launcher"}
        if unknown:
            raise ConfigError(f"pipeline {name}: stage {s.get('name')!r} has unknown keys {sorted(unknown)}")
        stage = Stage(**s)
        if stage.mode not in MODES:
            raise ConfigError(f"pipeline {name}: stage {stage.name} mode {stage.mode!r}; use one of {MODES}")
        if stage.lambdas == "experiment":
            exp = next((o.split("=", 1)[1] for o in stage.overrides if o.startswith("experiment=")), None)
            if exp is None:
                raise ConfigError(f"pipeline {name}: stage {stage.name} takes its lambdas from an experiment= it lacks")
            stage.lambdas = experiment_ladder(exp)
        if stage.mode != "single" and not stage.lambdas:
            raise ConfigError(f"pipeline {name}: stage {stage.name} ({stage.mode}) needs lambdas")
        stages.append(stage)
    if not stages:
        raise ConfigError(f"pipeline {name}: no stages")
    queues = [list(q) for q in doc.get("queues") or []]
    models = {m: list(doc.get("models", {}).get(m) or [f"model={m}"]) for q in queues for m in q}
    return Recipe(name=path.stem, work=Path(doc["work"]), out=Path(doc["out"]), queues=queues, models=models,
                  stages=stages, publish=dict(doc.get("publish") or {}), common=list(doc.get("common") or []))


# -- what a stage's runs are and where they live ------------------------------------------------------------------
def run_dir(recipe: Recipe, model: str, stage: Stage, lmbda: float | None = None) -> Path:
    base = recipe.work / slug(model) / stage.name
    return base / f"lambda{lmbda}" if stage.mode == "per_lambda" else base


def finished(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads((path / "done.json").read_text())
    except (OSError, ValueError):
        return None
