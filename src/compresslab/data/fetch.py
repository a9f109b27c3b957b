"""`compresslab fetch NAME [--root DIR]`: public datasets and anchors, downloaded into the layout our configs read.

Every file has its URL and, where one is known, its SHA-256 (``fetch_manifest.json`` beside this module): a download
is written to ``<file>.part``, resumed with an HTTP Range request when the connection drops, checked, then renamed;
a file whose checksum does not match is kept as ``<file>.bad`` (never used, never silently deleted) and the command
says so. Archives are extracted into ``--root`` and their folder names are those of conf/data/<name>.yaml.
``$COMPRESSLAB_MIRROR`` (or ``--mirror``) serves every URL from another host with the same paths (an institute
mirror, an offline copy behind a local web server). Sources without a published checksum (DIV2K, CLIC) record the hash of what was downloaded in ``<root>/FETCHED.json``
and say that it is unverified. Offline, each file's error names the URL and the path to put the file at by hand.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from tqdm import tqdm

MANIFEST = Path(__file__).with_name("fetch_manifest.json")
CHUNK = 1 << 16


class FetchError(RuntimeError):
    pass


@dataclass
class Remote:
    url: str
    path: str                      # relative to the fetch root
    sha256: str | None = None      # None: no published checksum; the hash is recorded, marked unverified
    extract: bool = False          # a zip/tar archive unpacked into the root (then removed)


@dataclass
class Source:
    name: str
    about: str
    files: list[Remote] = field(default_factory=list)
    default_root: str = "data"     # "data": $COMPRESSLAB_DATA (or <repo>/data); "anchors": <data root>/anchors
    prepare: dict | None = None    # after the download: {"crops": {...}} cuts train/ and val/ crops (see prepare_crops)


def sources(manifest: Path = MANIFEST) -> dict[str, Source]:
    doc = json.loads(manifest.read_text())
    return {name: Source(name=name, about=s["about"], default_root=s.get("root", "data"), prepare=s.get("prepare"),
                         files=[Remote(**f) for f in s["files"]]) for name, s in doc.items()}


def anchor_folder() -> Path:
    """Where `compresslab fetch anchors` puts CompressAI's published RD results: <data root>/anchors."""
    from compresslab.data.root import resolve_data_root

    return resolve_data_root() / "anchors"


def mirrored(url: str, mirror: str | None = None) -> str:
    """``url`` on ``mirror`` (same path), when one is set."""
    mirror = mirror or os.environ.get("COMPRESSLAB_MIRROR")
    if not mirror:
        return url
    from urllib.parse import urlsplit

    return mirror.rstrip("/") + urlsplit(url).path


def sha256_of(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def download(url: str, target: Path, sha256: str | None, timeout: float = 60.0, quiet: bool = False) -> str:
    """Download ``url`` to ``target`` through ``target.part``, resuming a partial file; returns the SHA-256."""
    part = target.with_name(target.name + ".part")
    target.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the partial file is already complete
            resp = None
        else:
            raise FetchError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise FetchError(f"cannot download {url} ({reason}); offline? Download it by hand and put it at {target} "
                         f"(the checksum is still verified on the next `compresslab fetch`)") from None
    if resp is not None:
        with resp:
            resumed = have and resp.status == 206
            if have and not resumed:  # the server ignored Range: start again
                have = 0
            length = resp.headers.get("Content-Length")
            total = (have + int(length)) if length else None
            with open(part, "ab" if resumed else "wb") as f, \
                    tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=target.name, disable=quiet) as bar:
                try:
                    while block := resp.read(CHUNK):
                        f.write(block)
                        bar.update(len(block))
                except (OSError, urllib.error.URLError) as e:
                    raise FetchError(f"{url}: connection lost after {f.tell()} bytes ({e}); rerun the same command "
                                     f"to resume from {part}") from None
            if total is not None and part.stat().st_size < total:
                raise FetchError(f"{url}: got {part.stat().st_size} of {total} bytes; rerun the same command to resume "
                                 f"from {part}")
    digest = sha256_of(part)
    if sha256 and digest != sha256:
        bad = target.with_name(target.name + ".bad")
        part.replace(bad)
        raise FetchError(f"{url}: SHA-256 mismatch (expected {sha256}, got {digest}); the file is kept at {bad} "
                         f"and not used. Delete it and rerun, or check the URL (a changed upstream file)")
    part.replace(target)
    return digest


def _unsafe_member(name: str) -> str | None:
    """Why an archive member name may not be extracted, or None. zipfile would rewrite such names silently; a
    dataset archive never needs one, so it is refused by name instead."""
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    if ".." in parts:
        return "a '..' component"
    return None


def _check_members(archive: Path) -> None:
    """Refuse, before anything is written, an archive with a link, device or unsafe member, naming it."""
    import stat

    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                mode = info.external_attr >> 16
                why = "a symbolic link" if stat.S_ISLNK(mode) else _unsafe_member(info.filename)
                if why:
                    raise FetchError(f"{archive}: member {info.filename!r} is {why}; refusing to extract the archive "
                                     f"(nothing was written)")
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            for m in t.getmembers():
                why = ("a symbolic link" if m.issym() else "a hard link" if m.islnk() else
                       "a device or FIFO" if not (m.isfile() or m.isdir()) else _unsafe_member(m.name))
                if why:
                    raise FetchError(f"{archive}: member {m.name!r} is {why}; refusing to extract the archive "
                                     f"(nothing was written)")
    else:
        raise FetchError(f"{archive} is neither a zip nor a tar archive")


def _extract(archive: Path, root: Path) -> None:
    """Extract into a temporary folder under ``root`` and move the files into place only when all of it succeeded:
    a bad member, a full disk or a kill leaves no partial tree (the temporary folder is removed, or named .extract-*
    if killed). Every failure is a FetchError naming the archive."""
    import shutil
    import tempfile

    try:
        _check_members(archive)
        tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=root))
    except (zipfile.BadZipFile, tarfile.TarError, OSError) as e:
        raise FetchError(f"{archive}: cannot read the archive ({type(e).__name__}: {e})") from None
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                z.extractall(tmp)
        else:
            with tarfile.open(archive) as t:
                t.extractall(tmp, filter="data")
        for f in sorted(tmp.rglob("*")):
            if f.is_file():
                dest = root / f.relative_to(tmp)
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(f, dest)
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as e:
        raise FetchError(f"{archive}: extraction failed ({type(e).__name__}: {e}); nothing was extracted into "
                         f"{root}, rerun to retry") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fetch(source: Source, root: Path, quiet: bool = False, mirror: str | None = None) -> list[Path]:
    """Fetch every file of ``source`` under ``root``; files already present with the right checksum are skipped."""
    root.mkdir(parents=True, exist_ok=True)
    record_path = root / "FETCHED.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    done = []
    for rf in source.files:
        target = root / rf.path
        marker = root / ".fetched" / (rf.path.replace("/", "__") + ".done")  # an archive once extracted
        if rf.extract and marker.exists():
            continue
        if target.exists() and not rf.extract:
            if rf.sha256 is None or sha256_of(target) == rf.sha256:
                continue
            raise FetchError(f"{target} exists but its SHA-256 differs from {rf.url}'s published one; move it away "
                             f"and rerun (it is not overwritten)")
        digest = download(mirrored(rf.url, mirror), target, rf.sha256, quiet=quiet)
        record[rf.path] = {"url": rf.url, "sha256": digest, "verified": rf.sha256 is not None,
                           "date": time.strftime("%Y-%m-%d %H:%M:%S")}
        if rf.sha256 is None and not quiet:
            print(f"{rf.path}: no published checksum; recorded SHA-256 {digest} in {record_path} (unverified)")
        if rf.extract:
            _extract(target, root)
            marker.parent.mkdir(exist_ok=True)
            marker.write_text(digest + "\n")
            target.unlink()
        done.append(target)
        record_path.write_text(json.dumps(record, indent=2))
    return done


def prepare_crops(root: Path, src_dir: str, train: int, per_image: int, size: int, val: int, val_size: int,
                  seed: int = 0) -> tuple[int, int]:
    """The default layout (<root>/train, <root>/val) cut from a downloaded image folder: ``per_image`` random
    ``size``² crops of each of the first ``train`` images into train/, one centre ``val_size``² crop of each of the
    next ``val`` images into val/ (no image in both). Lossless PNG; deterministic for a seed."""
    import random

    from PIL import Image

    from compresslab.data.images import find_images

    files = find_images(root / src_dir)
    if len(files) < train + val:
        raise FetchError(f"{root / src_dir} holds {len(files)} images; {train} + {val} needed for the crops")
    rng = random.Random(seed)
    (root / "train").mkdir(exist_ok=True)
    (root / "val").mkdir(exist_ok=True)
    n_train = 0
    for f in files[:train]:
        img = Image.open(f).convert("RGB")
        w, h = img.size
        for k in range(per_image):
            x, y = rng.randrange(0, w - size + 1), rng.randrange(0, h - size + 1)
            img.crop((x, y, x + size, y + size)).save(root / "train" / f"{f.stem}_{k}.png")
            n_train += 1
    for f in files[train:train + val]:
        img = Image.open(f).convert("RGB")
        w, h = img.size
        s = min(val_size, w, h)
        img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)).save(root / "val" / f"{f.stem}.png")
    return n_train, val


def present(source: Source, data_root: Path) -> Path | None:
    """Where ``source`` is already complete without a download: the anchors in <data root>/anchors (checksums
    verified), a prepared train/ + val/ in the data root. None when it has to be fetched."""
    if source.default_root == "anchors":
        folder = data_root / "anchors"
        ok = all((folder / f.path).is_file() and (f.sha256 is None or sha256_of(folder / f.path) == f.sha256)
                 for f in source.files)
        return folder if ok and source.files else None
    if source.prepare and all(any((data_root / d).glob("*.png")) for d in ("train", "val")):
        return data_root
    return None


def default_root(source: Source) -> Path:
    """Anchors go to <data root>/anchors (searched by the registry); datasets to the data root ($COMPRESSLAB_DATA)."""
    if source.default_root == "anchors":
        return anchor_folder()
    from compresslab.data.root import resolve_data_root

    return resolve_data_root()


def fetch_many(names: Iterable[str], root: str | None = None, quiet: bool = False,
               manifest: Path = MANIFEST, mirror: str | None = None) -> dict[str, Path]:
    known = sources(manifest)
    out = {}
    for name in names:
        if name not in known:
            raise FetchError(f"unknown source {name!r}; one of: {', '.join(known)}")
        src = known[name]
        if not root:
            from compresslab.data.root import resolve_data_root

            here = present(src, resolve_data_root())
            if here is not None:
                if not quiet:
                    print(f"{name}: already present in {here} (nothing downloaded)")
                out[name] = here
                continue
        dest = Path(root) if root else default_root(src)
        fetch(src, dest, quiet=quiet, mirror=mirror)
        if src.prepare and "crops" in src.prepare and not any((dest / "train").glob("*.png")):
            n_train, n_val = prepare_crops(dest, **src.prepare["crops"])
            if not quiet:
                print(f"{name}: {n_train} training crops in {dest / 'train'}, {n_val} validation crops in {dest / 'val'}")
        out[name] = dest
    return out
