"""CompressAI's pretrained models as checkpoint sources: ``zoo:<architecture>/<metric>/<quality>``.

Accepted wherever a checkpoint path is (``compresslab evaluate``/``compress``, ``init_from=``, ``model.base_ckpt=``,
LOF), because ``checkpoints.load_checkpoint`` resolves it here. The weights come from CompressAI's own table of
URLs and file names (``compressai.zoo.image.model_urls``) through torch hub's cache
(``$TORCH_HOME/hub/checkpoints``), are read with ``weights_only=True`` and renamed by CompressAI's
``load_pretrained``; the architecture's (N, M) for that quality comes from ``compressai.zoo.image.cfgs``.
A missing file is downloaded (hash-checked against the prefix in its name, as torch.hub does) into that cache; an
offline machine works once the file is placed there. ``$COMPRESSLAB_ZOO_URLS`` / ``$COMPRESSLAB_MIRROR`` point at a
lab's own copies.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

PREFIX = "zoo:"
# CompressAI zoo architecture -> our registered model that is state-dict compatible with it. Filled by
# models.registry from each class's own `compressai_arch` (one declaration, on the class; this module knows no model).
ARCHITECTURES: dict[str, str] = {}


def register_architecture(arch: str, model: str) -> None:
    """``model`` (a registered name) loads CompressAI's ``arch`` weights; one model per architecture."""
    if ARCHITECTURES.get(arch, model) != model:
        raise ValueError(f"CompressAI architecture {arch!r} is already served by model {ARCHITECTURES[arch]!r}; "
                         f"model {model!r} declares it too (compressai_arch)")
    ARCHITECTURES[arch] = model


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
    """``zoo:<arch>/<metric>/<quality>`` or ``zoo:<arch>:q<quality>[:<metric>]`` (metric mse by default)."""
    body = str(spec)[len(PREFIX):]
    parts = body.split("/")
    short = body.split(":")
    if len(parts) == 1 and len(short) in (2, 3) and short[1][:1] == "q" and short[1][1:].isdigit():
        parts = [short[0], short[2] if len(short) == 3 else "mse", short[1][1:]]
    if len(parts) != 3 or not parts[2].isdigit():
        raise ZooError(f"{spec!r}: use zoo:<architecture>/<metric>/<quality> or "
                       f"zoo:<architecture>:q<quality>[:metric], e.g. zoo:bmshj2018-factorized/mse/3 or zoo:mbt2018-mean:q3")
    arch, metric, quality = parts[0], parts[1], int(parts[2])
    if arch not in ARCHITECTURES:
        raise ZooError(f"{spec!r}: architecture {arch!r} has no zoo weights that a CompressLab model loads; "
                       f"available: {sorted(ARCHITECTURES)}")
    return arch, metric, quality


ZOO_URLS_ENV = "COMPRESSLAB_ZOO_URLS"  # a JSON file {arch: {metric: {quality: url}}} over CompressAI's table
MIRROR_ENV = "COMPRESSLAB_MIRROR"      # the same mirror `compresslab fetch` uses: every URL's host replaced


def zoo_url(arch: str, metric: str, quality: int) -> str:
    """The weights' URL: CompressAI's own table (``compressai.zoo.image.model_urls``), overridden per entry by a lab's
    table in ``$COMPRESSLAB_ZOO_URLS`` (its own copies or retrained models), then moved to ``$COMPRESSLAB_MIRROR``."""
    import json
    from urllib.parse import urlsplit, urlunsplit

    from compressai.zoo.image import cfgs, model_urls

    url = None
    own = os.environ.get(ZOO_URLS_ENV)
    if own:
        try:
            table = json.loads(Path(own).read_text())
        except (OSError, ValueError) as e:
            raise ZooError(f"${ZOO_URLS_ENV}={own}: cannot read it as JSON ({e})") from None
        url = ((table.get(arch) or {}).get(metric) or {}).get(str(quality))
    if url is None:
        try:
            url = model_urls[arch][metric][quality]
        except KeyError:
            raise ZooError(f"zoo:{arch}/{metric}/{quality}: CompressAI publishes no {arch} model for metric {metric!r} "
                           f"quality {quality} (metrics {sorted(model_urls[arch])}, qualities "
                           f"{sorted(cfgs[arch])})") from None
    mirror = os.environ.get(MIRROR_ENV)
    if mirror:
        m, u = urlsplit(mirror), urlsplit(url)
        url = urlunsplit((m.scheme, m.netloc, m.path.rstrip("/") + u.path, u.query, ""))
    return url


def cached_file(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def hash_prefix(url: str) -> str | None:
    """The SHA-256 prefix in a zoo file's name (``…-prior-1-446d5c7f.pth.tar``: torch.hub's ``check_hash`` rule)."""
    match = torch.hub.HASH_REGEX.search(os.path.basename(url))
    return match.group(1) if match and match.group(1) else None


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def zoo_file(spec: str, download: bool = True, timeout: float = 60.0) -> tuple[Path, str, str]:
    """(cached file, URL, SHA-256) for a zoo spec, downloading it into torch hub's cache when missing. A download is
    written to a temporary file and renamed only when its hash matches the prefix in its name (torch.hub's own
    ``download_url_to_file``), so a wrong or truncated file is refused and never cached; a cached file is checked the
    same way before it is used."""
    import socket
    import sys
    from urllib.error import URLError

    arch, metric, quality = parse(spec)
    url = zoo_url(arch, metric, quality)
    path = cached_file(url)
    prefix = hash_prefix(url)
    if not path.is_file():
        offline = (f"{spec}: pretrained weights not in torch hub's cache ({path}); download {url} into {path.parent} "
                   f"(or set TORCH_HOME to a folder that has it)")
        if not download:
            raise ZooError(offline)
        path.parent.mkdir(parents=True, exist_ok=True)
        before = socket.getdefaulttimeout()
        socket.setdefaulttimeout(timeout)  # urllib in torch.hub has no timeout of its own: an offline host never answers
        try:
            torch.hub.download_url_to_file(url, str(path), hash_prefix=prefix, progress=sys.stderr.isatty())
        except RuntimeError as e:
            if "invalid hash value" not in str(e):
                raise
            raise ZooError(f"{spec}: {url} downloaded, but its SHA-256 does not start with {prefix} (the hash in its "
                           f"name): refused, nothing cached ({e})") from None
        except (URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            raise ZooError(f"{offline}; the download failed: {reason}") from None
        finally:
            socket.setdefaulttimeout(before)
    digest = _sha256(path)
    if prefix and not digest.startswith(prefix):
        raise ZooError(f"{spec}: the cached {path} does not match the hash in its name ({prefix}…, file has "
                       f"{digest[:12]}…): delete it and it is downloaded again")
    return path, url, digest


def load_zoo_checkpoint(spec: str, download: bool = True) -> dict[str, Any]:
    """A checkpoint dict shaped like ours: state_dict + compresslab metadata (model config, source, file hash). The
    file is read with ``weights_only=True`` and its keys renamed by CompressAI's own ``load_pretrained`` (the 2020
    layout: ``entropy_bottleneck._matrices.N`` …)."""
    from compressai.zoo.image import cfgs, load_pretrained

    arch, metric, quality = parse(spec)
    path, url, digest = zoo_file(spec, download=download)
    sd = load_pretrained(torch.load(path, map_location="cpu", weights_only=True))
    sizes = dict(zip(("N", "M"), cfgs[arch][quality]))  # cheng2020-*: N only (its latent has N channels)
    return {"state_dict": sd,
            "compresslab": {"model": {"name": ARCHITECTURES[arch], **sizes},
                            "lambda": MSE_LAMBDAS[quality] if metric == "mse" else None,
                            "source": {"zoo": spec, "url": url, "file": path.name, "sha256": digest}}}


def nearest_quality(lmbda: float, metric: str = "mse") -> int:
    """The zoo quality whose training lambda is nearest to ``lmbda`` on a log scale (the ladder is geometric)."""
    import math

    if metric != "mse":
        raise ZooError("only the MSE models' lambdas are known (CompressAI's MS-SSIM ladder differs)")
    return min(MSE_LAMBDAS, key=lambda q: abs(math.log(MSE_LAMBDAS[q] / lmbda)))
