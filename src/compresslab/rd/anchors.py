"""Anchor RD curves with provenance: a registry over CompressAI's published result JSON files.

Anchors are named ``<dataset>/<file stem>`` (``kodak/vtm``, ``kodak/compressai-bmshj2018-hyperprior_mse_cpu``,
``kodak/8bit-decoded/...``). Folders searched, first match wins (``anchor_roots``):
1. ``$COMPRESSLAB_ANCHORS`` (or ``callbacks.rd_eval.anchors_dir``): the user's own anchors, e.g. built with
   ``compresslab anchors build`` for their codec version and dataset; a name found here that a later folder also
   holds with other content is reported as overridden;
2. ``<data root>/anchors`` (``$COMPRESSLAB_DATA``), which ``compresslab fetch anchors`` fills with CompressAI's
   published results (pinned commit, SHA-256 checked): the update path;
3. the anchors inside the package (``compresslab/anchor_data``): CompressAI's published result files for Kodak and
   CLIC 2020 at the same pinned commit (BSD-3-Clause-Clear, ``LICENSE-CompressAI``; upstream URL and SHA-256 per file
   in ``MANIFEST-CompressAI.json``) and those we measured with the anchor builder. So BD-rate vs ``kodak/vtm`` works on
   an installed wheel with no data folder and no network.
Metadata (codec, version, configuration, colour space, PSNR definition, source) comes from the table below, which
transcribes ``anchors/README.md`` of the shared data; unknown files get generic metadata from their JSON.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compresslab.data.root import resolve_data_root

SOURCE = "InterDigitalInc/CompressAI@869a9f5d4126d015b7de8f203fe60ee9e1608193 results/image/"

_PSNR_CONVERTED = ("PSNR on RGB computed against the YCbCr(8-bit)->RGB converted input, float reconstruction "
                   "(not 8-bit RGB); slightly optimistic vs strict 8-bit RGB PSNR (~0.5 dB near 0.9 bpp, more at "
                   "higher rates; CompressAI issues #189, #210, #324)")
_PSNR_RGB = "PSNR on RGB against the original 8-bit RGB image"

KNOWN: dict[str, dict[str, str]] = {
    "vtm": {"codec": "VVC (VTM reference software)", "version": "VTM 9.1 or 8.2 (not recorded upstream; see "
            "CompressAI issue #166)", "configuration": "all-intra encoder_intra_vtm.cfg, QP 47..12 step 5",
            "colour_space": "YCbCr 4:4:4 8-bit (BT.709 rgb2ycbcr)", "psnr": _PSNR_CONVERTED},
    "hm": {"codec": "HEVC (HM reference software)", "version": "HM-16.20+SCM-8.8 (or 16.19+SCM-8.8)",
           "configuration": "encoder_intra_main_rext.cfg, QP 47..12 step 5", "colour_space": "YCbCr 4:4:4 8-bit",
           "psnr": _PSNR_CONVERTED},
    "av1": {"codec": "AV1 (libaom aomenc)", "version": "reference build (not recorded)",
            "configuration": "--i444 --cpu-used=0 --passes=2 --tune=psnr, cq-level 62..7",
            "colour_space": "YCbCr 4:4:4", "psnr": _PSNR_CONVERTED},
    "bpg_444_x265_ycbcr": {"codec": "BPG", "version": "0.9.8", "configuration": "x265, q 47..12 step 5",
                           "colour_space": "YCbCr 4:4:4 8-bit", "psnr": _PSNR_RGB},
    "jpeg": {"codec": "JPEG (Pillow)", "version": "Pillow 7.1.2", "configuration": "quality 5..95 step 5",
             "colour_space": "YCbCr 4:2:0 (Pillow default)", "psnr": _PSNR_RGB},
    "webp": {"codec": "WebP (Pillow)", "version": "Pillow 7.1.2", "configuration": "quality 5..95 step 5",
             "colour_space": "YUV 4:2:0", "psnr": _PSNR_RGB},
    "jpeg2000": {"codec": "JPEG 2000 (ffmpeg)", "version": "ffmpeg 3.4.6", "configuration": "q 5..95 step 5",
                 "colour_space": "yuv444p", "psnr": _PSNR_RGB},
}


class AnchorError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


@dataclass
class Anchor:
    name: str
    path: Path
    label: str
    results: dict[str, list[float]]
    meta: dict[str, Any] = field(default_factory=dict)

    def curve(self, metric: str = "psnr-rgb") -> tuple[list[float], list[float]]:
        from compresslab.evaluation.quality import with_derived_metrics

        self.results = with_derived_metrics(self.results)
        if metric not in self.results:
            raise AnchorError(f"anchor {self.name} has no {metric!r} values (has {sorted(self.results)})")
        return list(self.results["bpp"]), list(self.results[metric])


PACKAGE_ANCHORS = Path(__file__).resolve().parents[1] / "anchor_data"
ENV_VAR = "COMPRESSLAB_ANCHORS"
_warned: set[str] = set()


def anchor_roots(root: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for anchors, in order (an explicit ``root`` is the only one searched)."""
    if root:
        return [Path(root)]
    roots = [Path(p).expanduser() for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]
    roots += [resolve_data_root() / "anchors", PACKAGE_ANCHORS]
    out: list[Path] = []
    for r in roots:
        if r.is_dir() and r.resolve() not in [o.resolve() for o in out]:
            out.append(r)
    return out


def anchors_root(root: str | os.PathLike | None = None) -> Path:
    """The first anchor folder (where a user's own anchors would be found first)."""
    roots = anchor_roots(root)
    if not roots:
        raise AnchorError(_no_anchors(root))
    return roots[0]


def _no_anchors(root) -> str:
    if root:
        return f"anchor folder {root} does not exist"
    return (f"no anchor folder found: run `compresslab fetch anchors` (CompressAI's published RD results, "
            f"checksummed, into {resolve_data_root() / 'anchors'}), or set $COMPRESSLAB_DATA to a folder with anchors/, or "
            f"${ENV_VAR} to your own anchors")


def _find(name: str, root) -> tuple[Path | None, list[Path]]:
    """The file that serves ``name`` and the other folders' copies of it."""
    hits = [r / f"{name}.json" for r in anchor_roots(root) if (r / f"{name}.json").is_file()]
    return (hits[0] if hits else None), hits[1:]


def _metadata(name: str, path: Path, data: dict[str, Any]) -> dict[str, Any]:
    stem = path.stem
    own = data.get("meta") or {}
    if own.get("builder"):  # built by `compresslab anchors build`: its own record is the provenance
        return {**own, "file": f"{name}.json"}
    # Relative to the data root: committed summaries must not carry one machine's paths.
    meta: dict[str, Any] = {"source": SOURCE + name.replace("/", "/", 1) + ".json", "file": f"anchors/{name}.json",
                            "served_from": _served_from(path)}
    if stem in KNOWN:
        meta.update(KNOWN[stem])
    elif stem.startswith("compressai-"):
        arch, _, rest = stem[len("compressai-"):].partition("_")
        meta.update(codec=f"CompressAI pretrained {arch}", configuration=rest.replace("_", ", "),
                    colour_space="RGB", psnr=_PSNR_RGB + (", 8-bit rounded reconstruction" if "8bit" in name
                                                          else ", float reconstruction (not rounded to 8 bits)"))
    elif stem.startswith("paper-"):
        meta.update(codec=f"published numbers: {stem[len('paper-'):]}", colour_space="RGB",
                    psnr="as reported in the paper")
        meta.update({k: v for k, v in (data.get("meta") or {}).items() if isinstance(v, (str, int, float))})
    if "/8bit-decoded/" in f"/{name}" and "ms-ssim" in stem:
        meta["caveat"] = ("8bit-decoded ms-ssim files hold copies of the MSE numbers upstream; not usable as "
                          "MS-SSIM anchors")
        meta["unusable"] = True
    return meta


def _served_from(path: Path) -> str:
    """Which search-path entry a file came from, without a machine's absolute path (committed summaries carry it)."""
    try:
        path.resolve().relative_to(PACKAGE_ANCHORS.resolve())
        return "package"
    except ValueError:
        return "data root" if path.resolve().is_relative_to(resolve_data_root().resolve()) else "user folder"


def list_anchors(root: str | os.PathLike | None = None, include_unusable: bool = False) -> list[str]:
    roots = anchor_roots(root)
    if not roots:
        raise AnchorError(_no_anchors(root))
    # the package's MANIFEST-*.json (provenance of the shipped files) is not a curve
    names = sorted({str(p.relative_to(base).with_suffix("")) for base in roots for p in base.rglob("*.json")
                    if not p.name.startswith("MANIFEST")})
    if not include_unusable:
        names = [n for n in names if not ("8bit-decoded/" in n and "ms-ssim" in n.rsplit("/", 1)[-1])]
    return names


def load_anchor(name: str, root: str | os.PathLike | None = None) -> Anchor:
    path, shadowed = _find(name, root)
    if path is None:
        available = ", ".join(n for n in list_anchors(root) if n.startswith(name.split("/")[0]))[:400]
        where = ", ".join(str(r) for r in anchor_roots(root))
        hint = "" if root else (f"; `compresslab anchors --dataset {name.split('/')[0]}` lists them, "
                                f"`compresslab anchors build` makes one for your own codec")
        raise AnchorError(f"unknown anchor {name!r} (searched {where}); available: {available}{hint}")
    differing = [p for p in shadowed if p.read_bytes() != path.read_bytes()]
    if differing and name not in _warned:
        _warned.add(name)
        warnings.warn(f"anchor {name}: {path} overrides {', '.join(map(str, differing))} (different content)",
                      stacklevel=2)
    data = json.loads(path.read_text())
    meta = _metadata(name, path, data)
    if meta.get("unusable"):
        raise AnchorError(f"anchor {name} is not usable: {meta['caveat']}")
    results = {k: [float(v) for v in vals] for k, vals in data["results"].items() if isinstance(vals, list)}
    return Anchor(name=name, path=path, label=data.get("name") or path.stem, results=results, meta=meta)
