"""CompressAI's pretrained models as checkpoint sources: ``zoo:<architecture>/<metric>/<quality>``.

Accepted wherever a checkpoint path is (``compresslab evaluate``/``compress``, ``init_from=``, ``model.base_ckpt=``,
LOF), because ``checkpoints.load_checkpoint`` resolves it here. The weights come from CompressAI's own table of
URLs and file names (``compressai.zoo.image.model_urls``) through torch hub's cache
(``$TORCH_HOME/hub/checkpoints``), are read with ``weights_only=True`` and renamed by CompressAI's
``load_pretrained``; the architecture's (N, M) for that quality comes from ``compressai.zoo.image.cfgs``.
Nothing is downloaded when the file is already cached, so an offline machine works once the file is placed there.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

PREFIX = "zoo:"
# CompressAI zoo architecture -> our registered model that is state-dict compatible with it
ARCHITECTURES = {"bmshj2018-factorized": "factorized", "bmshj2018-hyperprior": "hyperprior"}


# The lambdas CompressAI trained its MSE models with, per quality (CompressAI's zoo documentation; the same ladder as
# conf/reproduce/ulhaq2024.yaml). A zoo checkpoint does not record its lambda, so LOF and labels take it from here.
MSE_LAMBDAS = {1: 0.0018, 2: 0.0035, 3: 0.0067, 4: 0.013, 5: 0.025, 6: 0.0483, 7: 0.0932, 8: 0.18}


def zoo_lambda(spec: str) -> float:
    arch, metric, quality = parse(spec)
    if metric != "mse":
        raise ZooError(f"{spec}: only the MSE models' lambdas are known (CompressAI's MS-SSIM ladder differs)")
    return MSE_LAMBDAS[quality]


class ZooError(ValueError):
    pass


def is_zoo(spec: str | os.PathLike) -> bool:
    return str(spec).startswith(PREFIX)


def parse(spec: str) -> tuple[str, str, int]:
    body = str(spec)[len(PREFIX):]
    parts = body.split("/")
    if len(parts) != 3 or not parts[2].isdigit():
        raise ZooError(f"{spec!r}: use zoo:<architecture>/<metric>/<quality>, e.g. zoo:bmshj2018-factorized/mse/3")
    arch, metric, quality = parts[0], parts[1], int(parts[2])
    if arch not in ARCHITECTURES:
        raise ZooError(f"{spec!r}: architecture {arch!r} has no CompressLab model; available: {sorted(ARCHITECTURES)}")
    return arch, metric, quality


def cached_file(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def load_zoo_checkpoint(spec: str, download: bool = False) -> dict[str, Any]:
    """A checkpoint dict shaped like ours: state_dict + compresslab metadata (model config, source, file hash)."""
    from compressai.zoo.image import cfgs, load_pretrained, model_urls

    arch, metric, quality = parse(spec)
    try:
        url = model_urls[arch][metric][quality]
    except KeyError:
        raise ZooError(f"{spec!r}: CompressAI publishes no {arch} model for metric {metric!r} quality {quality} "
                       f"(metrics {sorted(model_urls[arch])}, qualities {sorted(cfgs[arch])})") from None
    path = cached_file(url)
    if not path.is_file() and not download:
        raise ZooError(f"{spec}: pretrained weights not found at {path}. Download {url} and put it in "
                       f"{path.parent} (or set TORCH_HOME), or run once with network access")
    sd = torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False, weights_only=True)
    sd = load_pretrained(sd)
    n, m = cfgs[arch][quality]
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    return {"state_dict": sd,
            "compresslab": {"model": {"name": ARCHITECTURES[arch], "N": n, "M": m},
                            "source": {"zoo": spec, "url": url, "file": path.name, "sha256": digest}}}
