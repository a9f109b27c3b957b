"""Where a model built on a trained base (the adaptive model on a factorized one) gets its base when the command
does not name one: ``python train.py model=adaptive lambda=0.01`` must finish on any machine.

Order (each step logged; the first that gives a checkpoint wins; knobs in conf/train.yaml ``base:``):
1. ``model.base_ckpt`` as given: a path or a ``zoo:`` spec;
2. a finished run of the base model (its ``done.json``) under ``paths.output_dir`` at the same lambda, N, M and loss
   metric, the newest first;
3. CompressAI's pretrained base for the zoo quality nearest in lambda (MSE only), cached in torch hub or downloaded
   (``base.download``), when the base model has a CompressAI twin;
4. the base trained first in this command (``base.train``): the same data, optimiser and trainer sections, its own run
   directory ``<output_dir>/runs/<base>-lambda<λ>/<run>-base``, then this model on it.
The choice is written to ``<run dir>/base.json``. Any model class that sets ``requires_base_ckpt`` gets this rule.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from compresslab.errors import ConfigError

log = logging.getLogger(__name__)


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def _given(cfg: DictConfig) -> str | None:
    if OmegaConf.is_missing(cfg.model, "base_ckpt"):
        return None
    value = cfg.model.get("base_ckpt")
    return str(value) if value else None


def finished_runs(output_dir: Path, model: str, lmbda: float, size: dict[str, int], metric: str) -> list[Path]:
    """last.ckpt of the finished runs (``done.json``) of ``model`` at this lambda, size and loss metric, newest first."""
    found = []
    for done in Path(output_dir).glob("**/done.json"):
        try:
            doc = json.loads(done.read_text())
        except (OSError, ValueError):
            continue
        m = doc.get("model") or {}
        if (m.get("name") == model and all(m.get(k) == v for k, v in size.items())
                and doc.get("loss_metric") == metric and doc.get("lambda") is not None
                and math.isclose(float(doc["lambda"]), lmbda, rel_tol=1e-6)
                and (done.parent / "checkpoints" / "last.ckpt").is_file()):
            found.append((done.stat().st_mtime, done.parent / "checkpoints" / "last.ckpt"))
    return [p for _, p in sorted(found, reverse=True)]


def _zoo_spec(base_cls, lmbda: float, metric: str) -> str | None:
    from compresslab.io.zoo import ARCHITECTURES, nearest_quality

    arch = base_cls.compressai_arch
    if arch not in ARCHITECTURES or metric != "mse":  # CompressAI's MS-SSIM ladder has no lambdas we know
        return None
    return f"zoo:{arch}/mse/{nearest_quality(lmbda)}"


def base_run_config(cfg: DictConfig, base: str) -> DictConfig:
    """The command's config with the model swapped for its base (the base's own YAML, the command's N and M) and
    nothing of the dependent model left (no objective, no resume, no base section of its own)."""
    from compresslab.conf import CONF_DIR

    model = OmegaConf.load(CONF_DIR / "model" / f"{base}.yaml")
    for key in ("N", "M"):
        if cfg.model.get(key) is not None:
            model[key] = cfg.model[key]
    doc = OmegaConf.to_container(cfg, resolve=True)
    # the callbacks' and loggers' entries name facts of the run (${runtime.*}) that the base's own run fills in:
    # they travel unresolved, and runtime starts empty
    for section in ("callbacks", "logger"):
        if cfg.get(section) is not None:
            doc[section] = OmegaConf.to_container(cfg[section], resolve=False)
    doc["runtime"] = {k: None for k in (cfg.get("runtime") or {})}
    doc.update(model=OmegaConf.to_container(model), objective=None, ckpt_path=None, init_from=None,
               name=f"{base}-lambda{cfg['lambda']}")
    doc.pop("hydra", None)
    return OmegaConf.create(doc)


def resolve_base(cfg: DictConfig, run_dir: Path, train: Callable[..., dict[str, Any]] | None = None
                 ) -> dict[str, Any] | None:
    """The base checkpoint for ``cfg.model`` (None for models without one), as {"base_ckpt", "how", "detail"}.
    ``train(cfg, run_dir=...)`` trains the base when nothing else is found (the caller passes training.run.run: the
    dependency points down, not back up into the module that calls us)."""
    from compresslab import models
    from compresslab.io.zoo import ZooError, zoo_file

    cls = models.get_model_class(cfg.model.name)
    if not cls.requires_base_ckpt:
        return None
    given = _given(cfg)
    if given:
        return {"base_ckpt": given, "how": "given", "detail": "model.base_ckpt"}
    policy = _plain(cfg.get("base")) or {}
    base, lmbda, metric = cls.base_model_of(_plain(cfg.model)), float(cfg["lambda"]), str(cfg.loss.metric)
    size = {k: int(cfg.model[k]) for k in ("N", "M") if cfg.model.get(k) is not None}
    tried = []
    if policy.get("search_runs", True):
        runs = finished_runs(Path(cfg.paths.output_dir), base, lmbda, size, metric)
        if runs:
            return {"base_ckpt": str(runs[0]), "how": "run",
                    "detail": f"a finished {base} run at lambda={lmbda:g}, N/M {size}, loss {metric}"}
        tried.append(f"no finished {base} run at lambda={lmbda:g} with {size} under {cfg.paths.output_dir}")
    if policy.get("zoo", True):
        spec = _zoo_spec(models.get_model_class(base), lmbda, metric)
        if spec is None:
            tried.append(f"no CompressAI pretrained {base} for loss {metric}")
        else:
            try:
                zoo_file(spec, download=bool(policy.get("download", True)))
                from compresslab.io.zoo import zoo_lambda

                return {"base_ckpt": spec, "how": "zoo",
                        "detail": f"CompressAI's pretrained model nearest in lambda (trained at {zoo_lambda(spec):g})"}
            except ZooError as e:
                tried.append(str(e))
                log.info("base: %s not available (%s)", spec, e)
    if policy.get("train", True) and train is not None:
        base_dir = Path(cfg.paths.output_dir).resolve() / "runs" / f"{base}-lambda{cfg['lambda']}" / f"{run_dir.name}-base"
        log.info("base: training a %s model first (lambda=%g, %s): %s; then %s on it", base, lmbda, size, base_dir,
                 cfg.model.name)
        result = train(base_run_config(cfg, base), run_dir=base_dir)
        return {"base_ckpt": result["last_ckpt"], "how": "trained",
                "detail": f"trained first in this command ({result['global_step']} steps) in {base_dir}"}
    raise ConfigError(f"model={cfg.model.name} needs a trained {base} base and none was found: " + "; ".join(tried)
                      + f". Pass model.base_ckpt=<{base} checkpoint or zoo: spec>, or allow base.train=true")
