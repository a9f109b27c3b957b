"""Image folders for training, validation and evaluation, with the loading rules in one place.

Data root: ``data.root`` if set, else ``$COMPRESSLAB_DATA``, else ``./data`` (where `compresslab fetch` puts it). Expected layout::

    <root>/train/**.png|jpg|jpeg|webp   training images (any size; random crops)
    <root>/val/**                        validation images (centre crops)
    <root>/kodak/kodim01.png ...         the evaluation set (see README: compresslab fetch kodak)

Loading rules (``load_rgb``): every mode becomes 8-bit RGB (grayscale replicated, alpha dropped, palette expanded,
16-bit scaled down by 257). Files that cannot be decoded are skipped and counted; a summary is reported once.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import lightning.pytorch as pl
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from .resumable import ResumableDataLoader, crop_generator, split_index

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
ENV_VAR = "COMPRESSLAB_DATA"


class DataLayoutError(FileNotFoundError):
    pass


class ImageDecodeError(ValueError):
    pass


def resolve_data_root(root: str | os.PathLike | None = None) -> Path:
    """``root`` if given, else ``$COMPRESSLAB_DATA``, else ``./data`` (the current folder's, as for an installed
    package: nothing is looked up relative to the source tree)."""
    if root:
        return Path(root).expanduser().resolve()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser().resolve()
    return Path("data").resolve()


def find_images(folder: Path, layout_hint: str | None = None, context: str = "") -> list[Path]:
    """Image files under ``folder`` (recursive), sorted for reproducibility; picked by extension. ``layout_hint``
    replaces the default layout's explanation when the folder is missing (named datasets say their own)."""
    if not folder.is_dir():
        raise DataLayoutError(f"{context}image folder {folder} does not exist. " + (layout_hint or (
            f"Expected layout: <data root>/train, <data root>/val, "
            f"<data root>/kodak with .png/.jpg/.webp files. Set data.root=... or ${ENV_VAR}, or see README "
            f"('Data') to download Kodak with `compresslab fetch kodak`.")))
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise DataLayoutError(f"{context}no images ({', '.join(IMAGE_EXTENSIONS)}) found under {folder}")
    return files


def to_rgb8(img: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB. 16/32-bit integer images are scaled to 8 bits, not clipped."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(np.round(arr / peak * 255.0), 0, 255).astype(np.uint8)
        img = Image.fromarray(arr, mode="L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        scale = 255.0 if arr.max() <= 1.0 else 1.0
        img = Image.fromarray(np.clip(np.round(arr * scale), 0, 255).astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        # Alpha is composited on white rather than dropped, so transparent pixels do not become arbitrary colours.
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("RGB")


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode an image file to 8-bit RGB or raise ImageDecodeError naming the file."""
    try:
        with Image.open(path) as img:
            img.load()
            return to_rgb8(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        # DecompressionBombError (PIL's own pixel limit) is no OSError: without it a bomb was a traceback
        raise ImageDecodeError(f"cannot decode image {path}: {e}") from e


def image_to_tensor(img: Image.Image) -> Tensor:
    arr = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def load_image_tensor(path: str | os.PathLike) -> Tensor:
    """(3, H, W) float tensor in [0, 1]."""
    return image_to_tensor(load_rgb(path))


@dataclass
class SkipReport:
    """Files a dataset skipped when it was built, by reason (reported once, as one warning)."""

    name: str
    unreadable: list[str]
    too_small: list[str]

    def summary(self) -> str | None:
        parts = []
        if self.unreadable:
            parts.append(f"{len(self.unreadable)} unreadable (e.g. {self.unreadable[0]})")
        if self.too_small:
            parts.append(f"{len(self.too_small)} smaller than the patch (e.g. {self.too_small[0]})")
        return f"{self.name}: skipped " + ", ".join(parts) if parts else None


class ImageFolderDataset(Dataset):
    """Images of a folder as fixed-size patches.

    Files are checked once when the dataset is built (header + size): undecodable ones are skipped and, with
    ``small_images='skip'``, so are images smaller than the patch (``'pad'`` reflect-pads them instead). A file that
    still fails to decode later (truncated data) is replaced by the next good file, so an epoch never crashes.
    """

    def __init__(self, folder: str | os.PathLike, patch_size: int | None, train: bool,
                 small_images: str = "pad", max_images: int | None = None, name: str | None = None,
                 cache_images: bool = False, files: list[Path] | None = None):
        if small_images not in ("pad", "skip"):
            raise ValueError(f"data.small_images must be 'pad' or 'skip', got {small_images!r}")
        self.folder = Path(folder)
        self.patch_size = patch_size
        self.train = train
        self.small_images = small_images
        self.report = SkipReport(name or self.folder.name, [], [])
        files = list(files) if files is not None else find_images(self.folder)  # a layout's file list, or a folder
        if max_images:
            files = files[: int(max_images)]
        self.files: list[Path] = []
        for f in files:
            try:
                with Image.open(f) as img:
                    w, h = img.size
                    img.verify()
            except Exception:  # noqa: BLE001 - any failure to parse the header means the file is unusable
                self.report.unreadable.append(f.name)
                continue
            if patch_size and min(w, h) < patch_size and small_images == "skip":
                self.report.too_small.append(f.name)
                continue
            self.files.append(f)
        if not self.files:
            raise DataLayoutError(f"no usable images under {self.folder}: {self.report.summary()}")
        msg = self.report.summary()
        if msg:
            log.warning(msg)
        self._late_failures: set[str] = set()
        self._lock = threading.Lock()
        # Decoded images kept as uint8 (3 bytes/pixel) per worker: a small set (e.g. 610 crops = 120 MB) is decoded
        # once instead of every epoch, which keeps a GPU fed without more workers.
        self.cache_images = bool(cache_images)
        self._cache: dict[int, Tensor] = {}

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int | tuple[int, int]) -> Tensor:
        # (index, crop seed) from compresslab.resumable.ResumableSampler: the crop depends on that seed alone
        index, crop_seed = split_index(index)
        generator = crop_generator(crop_seed) if self.train else None
        for attempt in range(len(self.files)):
            i = (index + attempt) % len(self.files)
            path = self.files[i]
            if i in self._cache:
                return self._crop(self._cache[i].float().div_(255.0), generator)
            try:
                x = load_image_tensor(path)
            except ImageDecodeError as e:
                with self._lock:
                    if path.name not in self._late_failures:
                        self._late_failures.add(path.name)
                        log.warning("%s; using the next image instead (reported once per file)", e)
                continue
            if self.cache_images:
                self._cache[i] = x.mul(255.0).round_().to(torch.uint8)
            return self._crop(x, generator)
        raise DataLayoutError(f"every image under {self.folder} failed to decode")

    def _crop(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return crop_patch(x, self.patch_size, self.train, generator)


def crop_patch(x: Tensor, p: int | None, train: bool, generator: torch.Generator | None = None) -> Tensor:
    """Training: a random p x p crop and a random horizontal flip (from ``generator``, else the global RNG);
    validation: the centre crop. Images smaller than the patch are padded (reflect where possible)."""
    if not p:
        return x
    _, h, w = x.shape
    if h < p or w < p:
        pad_h, pad_w = max(0, p - h), max(0, p - w)
        mode = "reflect" if pad_h < h and pad_w < w else "replicate"
        x = torch.nn.functional.pad(x[None], (0, pad_w, 0, pad_h), mode=mode)[0]
        _, h, w = x.shape
    if train:
        top = int(torch.randint(0, h - p + 1, (1,), generator=generator))
        left = int(torch.randint(0, w - p + 1, (1,), generator=generator))
        x = x[:, top: top + p, left: left + p]
        if torch.rand(1, generator=generator).item() < 0.5:
            x = x.flip(-1)
        return x
    top, left = (h - p) // 2, (w - p) // 2
    return x[:, top: top + p, left: left + p]


class ImageDataModule(pl.LightningDataModule):
    def __init__(self, root: str | None = None, train_dir: str = "train", val_dir: str = "val",
                 kodak_dir: str = "kodak", patch_size: int = 256, val_patch_size: int = 256, batch_size: int = 16,
                 val_batch_size: int = 8, num_workers: int = 2, small_images: str = "pad",
                 max_train_images: int | None = None, max_val_images: int | None = None,
                 cache_images: bool = False, name: str = "default", layout: str = "folder",
                 train_list: str | None = None, val_list: str | None = None, source: str | None = None,
                 eval_root: str | None = None, train_shards: str | None = None, shuffle_buffer: int = 1000,
                 resumable: bool = True, seed: int = 42, **unused: Any):
        super().__init__()
        if unused:
            raise ValueError(f"unknown data config keys {sorted(unused)}")
        self.root = resolve_data_root(root)
        # Kodak (and the anchors) may live apart from a large training set: data.eval_root, else the data root.
        self.eval_root = Path(eval_root).expanduser().resolve() if eval_root else self.root
        self.cfg = dict(train_dir=train_dir, val_dir=val_dir, kodak_dir=kodak_dir)
        self.dataset = dict(layout=layout, train_list=train_list, val_list=val_list, name=name, source=source,
                            train_shards=train_shards, shuffle_buffer=shuffle_buffer)
        self.patch_size, self.val_patch_size = int(patch_size), int(val_patch_size)
        self.batch_size, self.val_batch_size = int(batch_size), int(val_batch_size)
        self.num_workers = int(num_workers)
        self.small_images = small_images
        self.max_train_images, self.max_val_images = max_train_images, max_val_images
        self.cache_images = bool(cache_images)
        self.resumable, self.seed = bool(resumable), int(seed)
        self.train_set: ImageFolderDataset | None = None
        self.val_set: ImageFolderDataset | None = None

    @property
    def kodak_dir(self) -> Path:
        return self.eval_root / self.cfg["kodak_dir"]

    def setup(self, stage: str | None = None) -> None:
        from .datasets import split_files

        d = self.dataset
        if self.train_set is None and d["layout"] == "shards":
            from .shards import ShardedImageDataset

            self.train_set = ShardedImageDataset(d["train_shards"], self.patch_size, d["shuffle_buffer"])
        if self.train_set is None:
            files = split_files(self.root, self.cfg["train_dir"], d["layout"], d["train_list"], d["name"], d["source"])
            self.train_set = ImageFolderDataset(self.root / self.cfg["train_dir"], self.patch_size, train=True,
                                                small_images=self.small_images, max_images=self.max_train_images,
                                                name="train", cache_images=self.cache_images, files=files)
        if self.val_set is None:
            val_layout = "folder" if d["layout"] == "shards" else d["layout"]  # validation stays a local folder
            files = split_files(self.root, self.cfg["val_dir"], val_layout, d["val_list"], d["name"], d["source"])
            self.val_set = ImageFolderDataset(self.root / self.cfg["val_dir"], self.val_patch_size, train=False,
                                              small_images=self.small_images, max_images=self.max_val_images,
                                              name="val", cache_images=self.cache_images, files=files)

    def _loader(self, ds: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        streamed = isinstance(ds, torch.utils.data.IterableDataset)  # shards: order comes from the stream
        if shuffle and self.resumable and not streamed and len(ds) >= batch_size:
            # data.resumable: order, crops and position saved with the checkpoint (compresslab.resumable)
            return ResumableDataLoader(ds, batch_size, seed=self.seed, num_workers=self.num_workers,
                                       pin_memory=torch.cuda.is_available(),
                                       persistent_workers=self.num_workers > 0)
        return DataLoader(ds, batch_size=batch_size, shuffle=shuffle and not streamed, num_workers=self.num_workers,
                          drop_last=shuffle and (streamed or len(ds) >= batch_size),
                          pin_memory=torch.cuda.is_available(),
                          persistent_workers=self.num_workers > 0,
                          # resumable: creating a (validation) iterator draws nothing from the global RNG either
                          generator=torch.Generator().manual_seed(self.seed) if self.resumable else None)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.val_batch_size, shuffle=False)


def build_datamodule(cfg: Mapping[str, Any]) -> ImageDataModule:
    return ImageDataModule(**dict(cfg))

