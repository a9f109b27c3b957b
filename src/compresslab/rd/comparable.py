"""Which RD points may form one curve, and which curves may be compared: the comparability key, in one place.

Every rd.json's ``meta`` records how its point was measured. Points join one curve only when they agree on
``CurveKey``: the evaluation (set, image count, centre crop), the metric the weights were trained for (loss metric),
the architecture and its sizes (model name, N, M) and the entropy coder. ``compresslab rd``, ``bd-rate``, the sweep
summary and the pipeline's rd step (a ``compresslab rd`` subprocess) all read points through
``rd.points.load_curves``, which groups by curve label and this key: points of one label that differ in it
become separately named curves ("factorized [images=2, crop=256]"), never one.

A BD-rate compares two curves measured the same way: a test evaluated on fewer images than its anchor, or on
crops, is refused (``evaluation_clash``) unless the caller allows it (``--allow-partial``), and an anchor built on
a subset of its set says so wherever it is shown (``subset_note``). A key field that a file does not record (None)
neither splits a curve from files that do nor causes a refusal: CompressAI's result files carry no meta.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

# Images of a full evaluation set, where the set is fixed (CLIC has valid and test splits of different sizes: an
# rd.json or anchor on CLIC is compared by its recorded count only).
SET_SIZES = {"kodak": 24}

QUALITY_AXES = ("psnr-rgb", "ms-ssim-db-rgb", "ms-ssim-rgb")  # the suggested axis: the first every file holds

# field -> the name it has in a split curve's label and in messages
FIELD_NAMES = {"dataset": "set", "source": "source", "images": "images", "crop": "crop", "loss_metric": "loss",
               "model": "arch", "N": "N", "M": "M", "coder": "coder"}


@dataclass(frozen=True)
class CurveKey:
    """How a point was measured and what produced it; points of one curve share it."""

    dataset: str | None = None       # evaluation set ("kodak")
    source: str | None = None        # the image folder, for an evaluation on no named set (`evaluate --images`)
    images: int | None = None        # images evaluated (None: not recorded)
    crop: int | None = None          # centre crop of every image (None: full images)
    loss_metric: str | None = None   # the distortion the weights were trained for
    model: str | None = None         # the architecture (registry name)
    N: int | None = None
    M: int | None = None
    coder: str | None = None         # the entropy coder, where a model has more than one

    @classmethod
    def of_meta(cls, meta: Any) -> "CurveKey":
        """The key of an ``RDMeta`` (evaluation.results) as read from an rd.json."""
        model = meta.model or {}
        coder = meta.extra.get("entropy_coder") or model.get("entropy_coder")
        if coder is None and model.get("deterministic_coding"):
            coder = "deterministic"  # hyperprior's deterministic scale coder writes other bits than the default
        return cls(dataset=meta.dataset, source=None if meta.dataset else meta.image_source,
                   images=_int(meta.images) or None, crop=_int(meta.crop) or None, loss_metric=meta.loss_metric,
                   model=model.get("name"), N=_int(model.get("N")), M=_int(model.get("M")),
                   coder=None if coder is None else str(coder))

    @classmethod
    def of_anchor(cls, name: str, meta: Mapping[str, Any]) -> "CurveKey":
        """An anchor's evaluation: its set from its meta or its name (kodak/vtm), its image count where recorded
        (``anchors build`` records it; CompressAI's published curves are on the full set)."""
        dataset = meta.get("dataset") or (name.split("/")[0] if "/" in name else None)
        images = meta.get("images") if isinstance(meta.get("images"), int) else SET_SIZES.get(str(dataset))
        return cls(dataset=dataset, images=images)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any] | None) -> "CurveKey":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in (doc or {}).items() if k in names})

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def set_size(self) -> int | None:
        return SET_SIZES.get(str(self.dataset))

    @property
    def subset(self) -> bool:
        """Fewer images than its set holds (when the set's size is fixed)."""
        return bool(self.images and self.set_size and self.images < self.set_size)

    @property
    def recorded(self) -> bool:
        """Whether the file says how it was evaluated (CompressAI's result files do not)."""
        return self.images is not None or self.crop is not None or self.dataset is not None

    @property
    def partial(self) -> bool:
        return self.subset or self.crop is not None

    def evaluation(self) -> str:
        """"kodak, 2 of 24 images, crop 256" / "kodak, 24 images" / "evaluation not recorded"."""
        if not self.recorded:
            return "evaluation not recorded"
        count = (f"{self.images} of {self.set_size} images" if self.subset else
                 f"{self.images} images" if self.images else "images not recorded")
        crop = [f"crop {self.crop}"] if self.crop else []
        return ", ".join([str(self.dataset or self.source or "unnamed set"), count, *crop])

    def describe(self, field: str) -> str:
        value = getattr(self, field)
        return f"{FIELD_NAMES[field]}={'none' if value is None and field == 'crop' else value}"


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def differing_fields(keys: list[CurveKey]) -> list[str]:
    """The fields in which the keys differ (None counts: a split must name what separates the curves)."""
    return [f for f in FIELD_NAMES if len({getattr(k, f) for k in keys}) > 1]


def name_curves(groups: Mapping[tuple[str, CurveKey], list[dict]]) -> tuple[dict[str, list[dict]],
                                                                             dict[str, CurveKey], list[str]]:
    """(label, key) -> points into label -> points, label -> key and one note per split label. A label whose points
    share one key keeps its name; otherwise the group with most points (then the fuller evaluation) keeps it, and
    each other group is named by how it differs: "factorized [images=2, crop=256]"."""
    by_label: dict[str, list[tuple[CurveKey, list[dict]]]] = {}
    for (label, key), pts in groups.items():
        by_label.setdefault(label, []).append((key, pts))
    curves: dict[str, list[dict]] = {}
    keys: dict[str, CurveKey] = {}
    notes: list[str] = []
    for label, members in by_label.items():
        members.sort(key=lambda kp: (-len(kp[1]), kp[0].partial, -(kp[0].images or 0), repr(kp[0])))
        main = members[0][0]
        fields = differing_fields([k for k, _ in members])
        names = []
        for i, (key, pts) in enumerate(members):
            own = [key.describe(f) for f in fields if getattr(key, f) != getattr(main, f)]
            name = label if i == 0 else f"{label} [{', '.join(own)}]"
            while name in curves or name in by_label and name != label:
                name += "'"  # a split name that another curve already has (never in practice): still two curves
            curves[name], keys[name] = pts, key
            names.append(f"'{name}' ({len(pts)} point{'s' if len(pts) != 1 else ''}, {key.evaluation()})")
        if len(members) > 1:
            notes.append(f"{label}: points differ in {', '.join(FIELD_NAMES[f] for f in fields)}, so they form "
                         f"{len(members)} curves, not one: {'; '.join(names)}")
    return curves, keys, notes


def require_metric(curves: Mapping[str, list[dict]], metric: str) -> None:
    """Every point must carry the quality axis asked for: files of different metrics (a PSNR curve beside an
    MS-SSIM-only one) are refused in one line naming the files and an axis they all hold, if any."""
    lacking = sorted({str(p.get("file") or label) for label, pts in curves.items() for p in pts if metric not in p})
    if not lacking:
        return
    every = [m for m in QUALITY_AXES if all(m in p for pts in curves.values() for p in pts)]
    hint = (f"pass --metric {every[0]}, which every file given holds" if every else
            "the files given share no quality axis: summarise them in separate calls")
    shown = ", ".join(lacking[:4]) + (f" and {len(lacking) - 4} more" if len(lacking) > 4 else "")
    raise ValueError(f"{shown}: no {metric!r} values (results.{metric}); {hint}")


def evaluation_clash(test: CurveKey, other: CurveKey, other_name: str) -> str | None:
    """Why a BD-rate of ``test`` against ``other`` would compare different measurements (None when it would not):
    another evaluation set, another image count or another crop. Unrecorded fields never clash."""
    why: list[str] = []
    if not (test.recorded and other.recorded):
        return None
    if test.dataset and other.dataset and test.dataset != other.dataset:
        why.append("set")
    if test.images and other.images and test.images != other.images:
        why.append("image count")
    if test.crop != other.crop:
        why.append("crop")
    if not why:
        return None
    partial = "partial evaluation" if test.partial and not other.partial else "evaluation"
    verb = "differ" if len(why) > 1 else "differs"
    return f"{partial} ({test.evaluation()}) vs {other_name} ({other.evaluation()}): {' and '.join(why)} {verb}"


def subset_note(key: CurveKey, name: str) -> str | None:
    """What a reader of a number against ``name`` must know when it was built on part of its set."""
    return f"{name} built on {key.evaluation()}" if key.partial else None


def checked_bd_rate(ar, aq, tr, tq, *, test: CurveKey, other: CurveKey, other_name: str,
                    allow_partial: bool = False, **kw):
    """``bdrate.bd_rate`` after the comparability rule: refused (unavailable, the clash as the reason) when the
    curves were measured differently, unless ``allow_partial``; an allowed clash and an anchor on a subset are noted
    in the result (its line and reason say them)."""
    from compresslab.rd.bdrate import BDResult, BDRules, bd_rate

    clash = evaluation_clash(test, other, other_name)
    if clash and not allow_partial:
        rules = kw.get("rules") or BDRules()
        return BDResult(available=False, method=rules.method, n_anchor=len(ar), n_test=len(tr),
                        reason=f"{clash}, so the curves were not measured the same way (--allow-partial "
                               f"compares them anyway)")
    res = bd_rate(ar, aq, tr, tq, **kw)
    extra = [n for n in (f"compared under --allow-partial: {clash}" if clash else None, subset_note(other, other_name))
             if n]
    res.notes += extra
    if extra and not res.available:
        res.reason += "".join(f"; {n}" for n in extra)
    return res


__all__ = ["CurveKey", "QUALITY_AXES", "SET_SIZES", "checked_bd_rate", "differing_fields", "evaluation_clash",
           "name_curves", "require_metric", "subset_note"]
