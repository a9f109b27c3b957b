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
from PIL import Image
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from compresslab.data.images import DataLayoutError, ImageDecodeError, find_images, load_image_tensor, crop_patch
from compresslab.data.root import resolve_data_root
from compresslab.data.resumable import ResumableDataLoader, crop_generator, split_index

log = logging.getLogger(__name__)

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
        # (index, crop seed) from compresslab.data.resumable.ResumableSampler: the crop depends on that seed alone
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
        from compresslab.data.layouts import split_files

        d = self.dataset
        if self.train_set is None and d["layout"] == "shards":
            from compresslab.data.shards import ShardedImageDataset

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
            # data.resumable: order, crops and position saved with the checkpoint (compresslab.data.resumable)
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

