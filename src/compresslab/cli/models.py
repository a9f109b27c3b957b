"""``compresslab complexity MODEL ...``: parameters and kMAC per pixel of models, by part (models/complexity.py).
MODEL is a model config name (conf/model/<name>.yaml, sizes changed with --set) or a checkpoint (its own sizes)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def model_config(name: str, sets: list[str]) -> dict:
    """The model group's config as train.py composes it (``model=<name>``, its defaults list too) with ``--set
    KEY=VALUE`` applied to it; one line for an unknown name or key."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from compresslab.conf import CONF_DIR

    if not (CONF_DIR / "model" / f"{name}.yaml").is_file():
        known = sorted(str(p.relative_to(CONF_DIR / "model").with_suffix("")) for p in
                       (CONF_DIR / "model").rglob("*.yaml"))
        raise ValueError(f"{name}: neither a checkpoint file nor a model config; the configs are: {', '.join(known)}")
    for kv in sets:
        if "=" not in kv:
            raise ValueError(f"--set {kv}: KEY=VALUE, e.g. N=64")
    overrides = [f"model={name}", *(f"model.{kv.removeprefix('model.')}" for kv in sets)]
    try:
        with initialize_config_dir(str(CONF_DIR), version_base=None):
            cfg = compose(config_name="train", overrides=overrides)
        return OmegaConf.to_container(cfg.model, resolve=True)
    except (HydraException, OmegaConfBaseException) as e:
        raise ValueError(f"model {name} with --set {' '.join(sets)}: {str(e).splitlines()[0]}") from None


def cmd_complexity(args) -> int:
    size = args.size.lower().split("x")
    if len(size) != 2 or not all(s.isdigit() and int(s) > 0 for s in size):
        raise ValueError(f"--size {args.size}: WIDTHxHEIGHT in pixels, e.g. 768x512")
    width, height = int(size[0]), int(size[1])
    specs = []
    for spec in args.models:
        is_file = Path(spec).is_file() or spec.startswith("zoo:")
        name, _, own = spec.partition(":")  # name:KEY=VALUE,...: this model's own changes after --set's
        cfg = None if is_file else model_config(name, [*args.set, *filter(None, own.split(","))])
        specs.append((spec, cfg))  # every name checked before torch
    from compresslab import models
    from compresslab.models.complexity import complexity
    from compresslab.models.from_checkpoint import build_model_from_checkpoint

    rows = []
    for spec, cfg in specs:
        model = build_model_from_checkpoint(spec, update=False)[0] if cfg is None else models.build(cfg)
        c = complexity(model, height, width)
        rows.append({"model": spec, "config": cfg, **c})
        parts = ", ".join(f"{k} {v:.2f}" for k, v in c["kmac_by_part"].items())
        print(f"{spec}: {c['params']:,} parameters, {c['kmac_per_pixel']:.2f} kMAC/pixel at {width}x{height} "
              f"({parts})")
    if args.out:
        from compresslab.io.atomic import atomic_write_bytes

        import shlex

        import compressai
        import torch

        doc = {"command": shlex.join(["compresslab", *sys.argv[1:]]), "torch": torch.__version__,
               "compressai": compressai.__version__, "size": [width, height], "rows": rows}
        atomic_write_bytes(args.out, (json.dumps(doc, indent=1) + "\n").encode())
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("complexity", help="parameters and kMAC per pixel of models, by part")
    p.add_argument("models", nargs="+", help="a model config name (e.g. mbt2018-mean, msp/fast_gdn; "
                   "cheng2020-anchor:M=64 changes that model's keys only) or a checkpoint")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="change the configs' keys, e.g. N=64 M=96")
    p.add_argument("--size", default="768x512", help="image size WIDTHxHEIGHT (default: Kodak's 768x512)")
    p.add_argument("--out", help="also write the numbers as JSON here")
    p.set_defaults(func=cmd_complexity)
