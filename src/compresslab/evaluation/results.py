"""One owner of RD results: ``evaluate`` turns a model (and the checkpoint metadata it came from) into an
``RDResult``, and ``RDResult.write`` / ``RDResult.read`` are the only code that writes and reads rd.json. The training
callback, the CLI, the reproductions and every experiment go through here, so the metadata cannot drift apart and
the lambda and loss-metric rules are decided once (``checkpoint_lambda``, ``checkpoint_metric``).

rd.json is CompressAI's result format (``results``: parallel lists) with our per-image rows and a typed ``meta``;
files written before the schema (no ``meta.schema``) read back with the same fields. The schema and the rules import
no torch (``compresslab rd`` and ``bd-rate`` read results in a fraction of a second); ``evaluate`` imports it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from compresslab.evaluation.lof_config import LOFConfig

SCHEMA = 2  # 1: the hand-made dicts before this module (no "schema" key)


class ResultFileError(ValueError):
    """An rd.json that cannot be read as an RD result (one line naming the file and what is wrong)."""


@dataclass
class RDMeta:
    """What an RD point is: which weights, trained how, evaluated on what, by which code on which machine."""

    model: dict[str, Any]                    # the model config (name + constructor sizes)
    lmbda: float | None = None               # the lambda the weights were trained at ("lambda" in the file)
    step: int | None = None
    loss_metric: str = "mse"
    dataset: str | None = None               # "kodak", ... or None for a user's image folder
    image_source: str | None = None
    images: int = 0
    crop: int | None = None
    lof: bool = False
    lof_config: dict[str, Any] | None = None
    checkpoint: str | None = None
    run_dir: str | None = None
    label: str | None = None                 # the curve the point joins, when not the model's name
    config_hash: str | None = None
    recipe: str | None = None                # the experiment/recipe that produced it
    commit: str | None = None
    dirty: bool | None = None
    machine: dict[str, Any] | None = None    # cpu, gpu, torch, compressai
    extra: dict[str, Any] = field(default_factory=dict)  # study-specific keys (anchor comparisons, zoo source, ...)

    _FILE_NAMES = {"lmbda": "lambda"}

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"schema": SCHEMA}
        for f in dataclasses.fields(self):
            if f.name != "extra":
                doc[self._FILE_NAMES.get(f.name, f.name)] = getattr(self, f.name)
        clash = set(self.extra) & set(doc)
        if clash:
            raise ValueError(f"RDMeta.extra may not redefine schema fields: {sorted(clash)}")
        return {**doc, **self.extra}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> "RDMeta":
        doc = dict(doc)
        doc.pop("schema", None)
        if "loss_metric" not in doc and isinstance(doc.get("loss"), dict):  # schema 1 files of the CLI
            doc["loss_metric"] = doc["loss"].get("metric", "mse")
        names = {cls._FILE_NAMES.get(f.name, f.name): f.name for f in dataclasses.fields(cls) if f.name != "extra"}
        known = {names[k]: v for k, v in doc.items() if k in names}
        extra = {k: v for k, v in doc.items() if k not in names}
        known.setdefault("model", {})
        if known.get("label") is not None:
            known["label"] = current_label(str(known["label"]), extra)
        if known.get("loss_metric") is None:
            known["loss_metric"] = "mse"
        return cls(**known, extra=extra)


def current_label(label: str, extra: Mapping[str, Any] | None = None) -> str:
    """A curve label as it is shown now, for files written under an older name (issue 30): the static control
    fitted on training crops was "static re-fit", which claimed more than it is; it reads back as
    "static (<n> train crops)", n from the file's train_crops (200 where the file does not say)."""
    if label == "static re-fit":
        return f"static ({int((extra or {}).get('train_crops') or 200)} train crops)"
    return label


@dataclass
class RDResult:
    name: str
    results: dict[str, list[float]]          # CompressAI's format: one value per point
    per_image: list[dict[str, Any]]
    meta: RDMeta
    description: str = ""

    @property
    def mean(self) -> dict[str, float]:
        return {k: v[0] for k, v in self.results.items() if len(v) == 1}

    def headline(self) -> tuple[dict[str, float], list[dict[str, Any]]]:
        """(means, per-image rows) of the run's own point: the only one, or for a variable-rate result (one point
        per lambda of ``meta.extra["lambdas"]``) the point at ``meta.lmbda``, the lambda the run validated at."""
        lambdas = self.meta.extra.get("lambdas")
        if len(self.results["bpp"]) == 1 or not lambdas or self.meta.lmbda is None:
            return self.mean, self.per_image
        k = min(range(len(lambdas)), key=lambda i: abs(math.log(float(lambdas[i]) / float(self.meta.lmbda))))
        return ({key: v[k] for key, v in self.results.items() if len(v) == len(lambdas)},
                [r for r in self.per_image if r.get("rate_point") == k])

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "results": self.results,
                "per_image": self.per_image, "meta": self.meta.to_json()}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], where: str = "result") -> "RDResult":
        results = doc.get("results") if isinstance(doc, Mapping) else None
        if not isinstance(results, dict) or not isinstance(results.get("bpp"), list) or not results["bpp"]:
            raise ResultFileError(f"{where}: not an RD result file (expected a non-empty results.bpp list, "
                                  f"CompressAI's format)")
        return cls(name=str(doc.get("name") or ""), results=dict(results), per_image=list(doc.get("per_image") or []),
                   meta=RDMeta.from_json(doc.get("meta") or {}), description=str(doc.get("description") or ""))

    def write(self, path: str | os.PathLike) -> Path:
        from compresslab.io.atomic import atomic_write_bytes

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, (json.dumps(self.to_json(), indent=2) + "\n").encode())
        return path

    @classmethod
    def read(cls, path: str | os.PathLike) -> "RDResult":
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise ResultFileError(f"{path}: no such result file") from None
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise ResultFileError(f"{path}: not readable as JSON ({e})") from None
        return cls.from_json(doc, where=str(path))


# -- the rules, once ---------------------------------------------------------------------------------------------
def checkpoint_lambda(meta: Mapping[str, Any], given: float | None = None) -> float | None:
    """The lambda of an evaluation: the checkpoint's own (how its weights were trained; the label of its RD point).
    ``given`` is used only when the checkpoint records none (zoo weights); a different ``given`` is refused, since
    it would label the point, and steer LOF, at a lambda the weights were not trained for."""
    own = meta.get("lambda")
    if own is None:
        return None if given is None else float(given)
    if given is not None and not math.isclose(float(given), float(own), rel_tol=1e-6):
        raise ValueError(f"lambda={given:g} differs from the checkpoint's lambda {float(own):g}: the checkpoint's "
                         f"is used; drop the lambda argument (--lmbda) or pick the checkpoint trained at {given:g}")
    return float(own)


def checkpoint_metric(meta: Mapping[str, Any]) -> str:
    """The distortion the weights were trained for (and LOF optimises): the checkpoint's loss metric, else MSE."""
    return str((meta.get("loss") or {}).get("metric") or meta.get("loss_metric") or "mse")


def provenance_fields() -> dict[str, Any]:
    """commit, dirty flag and machine for a result's meta (what code on what hardware produced the number)."""
    from compresslab.provenance import git_state, machine

    g = git_state()
    return {"commit": g["commit"], "dirty": g["dirty"], "machine": machine()}


def bit_shares(rows: list[dict[str, Any]]) -> dict[str, float]:
    """The adaptive stage on a base's z (models/adaptive_base.py) reports its bits per image: over all images, the
    share of the counted bits that are z's and that are its side information (what the stage can move at most)."""
    if not rows or not all("z_bits" in r for r in rows):
        return {}
    total = sum(8 * r["bytes"] for r in rows)
    return {"z_share": sum(r["z_bits"] for r in rows) / total if total else 0.0,
            "side_share": sum(r["side_bits"] for r in rows) / total if total else 0.0}


def evaluate(model, images: Iterable[str | os.PathLike], meta: RDMeta, *, name: str | None = None,
             description: str = "", lof: LOFConfig | None = None, progress: bool = False,
             encode_factory: Callable | None = None, workers: int = 1, _one_point: bool = False) -> RDResult:
    """Real bitstreams of ``model`` on ``images`` (centre-cropped to ``meta.crop``), with LOF when ``lof`` is given
    (at ``meta.lmbda``, for ``meta.loss_metric``): the one evaluation every caller uses. ``workers``: images
    evaluated at once (evaluator.evaluate_model)."""
    from compresslab.evaluation.evaluator import METRIC_KEYS, evaluate_model

    files = [Path(f) for f in images]
    if getattr(model, "rate_lambdas", ()) and not _one_point:  # (a plain CompressAI model has no such attribute)
        return _evaluate_rate_points(model, files, meta, name=name, description=description, lof=lof,
                                     progress=progress, workers=workers)
    curves: list[dict] = []
    if lof is not None:
        from compresslab.evaluation.lof import config_dict, lof_encoder_factory

        if meta.lmbda is None:
            raise ValueError("LOF needs the model's lambda: the checkpoint has none, pass --lmbda")
        lof = dataclasses.replace(lof, metric=meta.loss_metric)
        encode_factory = lof_encoder_factory(model, lof, float(meta.lmbda), on_curve=curves.append)
        meta.lof, meta.lof_config = True, config_dict(lof)
    res = evaluate_model(model, files, crop=meta.crop, progress=progress, encode_factory=encode_factory,
                         workers=workers)
    for row, rep in zip(res["per_image"], curves):
        row["lof_curve"] = rep["lof_curve"]
    meta.images = len(files)
    meta.extra.update(bit_shares(res["per_image"]))
    for k, v in provenance_fields().items():
        if getattr(meta, k) is None:
            setattr(meta, k, v)
    label = name or meta.label or str(meta.model.get("name"))
    label += " +LOF" if meta.lof and not label.endswith("+LOF") else ""
    return RDResult(name=label, description=description or f"{label} lambda={meta.lmbda}",
                    results={k: [res["mean"][k]] for k in METRIC_KEYS if k in res["mean"]},
                    per_image=res["per_image"], meta=meta)


def _evaluate_rate_points(model, files: list[Path], meta: RDMeta, *, name, description, lof, progress,
                          workers) -> RDResult:
    """A variable-rate model: one point per rate point (its lambdas), in one result; per-image rows carry their
    ``rate_point`` and ``lambda``."""
    from compresslab.evaluation.evaluator import METRIC_KEYS

    lambdas = list(model.rate_lambdas)
    if lof is not None:
        raise ValueError("LOF of a variable-rate model is not implemented (one LOF objective per rate point); "
                         "evaluate it without --lof")
    keep, points, rows = model.rate_point, [], []
    try:
        for k, lam in enumerate(lambdas):
            model.set_rate_point(k)
            one = evaluate(model, files, dataclasses.replace(meta, extra=dict(meta.extra)), name=name,
                           progress=progress, workers=workers, description=description, _one_point=True)
            points.append(one)
            rows += [{**r, "rate_point": k, "lambda": lam} for r in one.per_image]
    finally:
        model.set_rate_point(keep)
    first = points[0]
    first.meta.extra["lambdas"] = lambdas
    return RDResult(name=first.name, description=description or f"{first.name} lambdas={lambdas}",
                    results={k: [p.results[k][0] for p in points] for k in METRIC_KEYS if k in first.results},
                    per_image=rows, meta=first.meta)


def evaluate_checkpoint(ckpt: str, images: Iterable[str | os.PathLike], *, crop: int | None = None,
                        lof: LOFConfig | None = None, lmbda: float | None = None, dataset: str | None = None,
                        image_source: str | None = None, model_override: Mapping[str, Any] | None = None,
                        progress: bool = False, workers: int = 1, **extra: Any) -> RDResult:
    """``evaluate`` for a checkpoint path or ``zoo:`` spec: the model and its metadata from the file, lambda and
    metric by the rules above."""
    from compresslab.models.from_checkpoint import build_model_from_checkpoint

    model, ck = build_model_from_checkpoint(ckpt, dict(model_override) if model_override else None)
    fields = {f.name for f in dataclasses.fields(RDMeta)} - {"extra"}
    named = {k: v for k, v in extra.items() if k in fields}  # recipe=..., label=...: schema fields, not extras
    meta = RDMeta(model=ck["model"], lmbda=checkpoint_lambda(ck, lmbda), step=ck.get("global_step"),
                  loss_metric=checkpoint_metric(ck), dataset=dataset, image_source=image_source, crop=crop,
                  checkpoint=str(ckpt), **named,
                  extra={**({"source": ck["source"]} if ck.get("source") else {}),
                         **{k: v for k, v in extra.items() if k not in fields}})
    from compresslab.models.registry import get_model_class

    label = get_model_class(ck["model"]["name"]).curve_label(ck["model"])
    if label != ck["model"]["name"]:
        meta.label = label
    return evaluate(model, images, meta, progress=progress, lof=lof, workers=workers,
                    description=f"{ckpt} on {image_source or dataset}")


__all__ = ["RDMeta", "RDResult", "ResultFileError", "checkpoint_lambda", "checkpoint_metric", "current_label",
           "evaluate", "evaluate_checkpoint", "provenance_fields"]
