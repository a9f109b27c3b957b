"""Training from WebDataset shards: for datasets that live in object storage or do not fit a node's disk.

``compresslab make-shards SRC OUT`` packs an image folder into tar shards (the original file bytes, no re-encoding:
lossless and as small as the source) plus ``index.json``; ``data.layout=shards data.train_shards=...`` streams them
(a brace pattern ``OUT/shard-{000000..000123}.tar``, an http(s) URL, or ``pipe:aws s3 cp s3://bucket/shard-{...}.tar -``
as WebDataset reads them). Shards are split across nodes (DDP ranks) and data-loader workers, shuffled at the shard
level and through a sample buffer; decoding follows the same rules as image folders (``data.load_rgb``).
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Iterator

from PIL import Image
from torch import Tensor
from torch.utils.data import IterableDataset

from compresslab.data.images import IMAGE_EXTENSIONS, crop_patch, find_images, image_to_tensor, to_rgb8
from compresslab.io.inputs import InputFileError, read_regular_file

log = logging.getLogger(__name__)
IMAGE_KEYS = tuple(e.lstrip(".") for e in IMAGE_EXTENSIONS)
MAX_IMAGE_FILE_BYTES = 1 << 31  # 2 GiB: no training image file is larger; a bigger "image" is refused by name


def write_shards(src: str | Path, out: str | Path, max_count: int = 10_000, max_size: float = 1e9,
                 prefix: str = "shard") -> dict:
    """Pack every image under ``src`` (recursive, sorted) into ``out/<prefix>-NNNNNN.tar``; returns the index."""
    import webdataset as wds

    src, out = Path(src), Path(out)
    files = find_images(src)
    out.mkdir(parents=True, exist_ok=True)
    if any(out.glob(f"{prefix}-*.tar")):
        raise FileExistsError(f"{out} already holds {prefix}-*.tar shards; choose an empty folder")
    try:
        with wds.ShardWriter(str(out / f"{prefix}-%06d.tar"), maxcount=max_count, maxsize=max_size,
                             verbose=0) as sink:
            for i, f in enumerate(files):
                ext = f.suffix.lower().lstrip(".")
                # a regular file, bounded read: a FIFO or a link to a device named *.png must not block or fill RAM
                try:
                    data = read_regular_file(f, MAX_IMAGE_FILE_BYTES, "image")
                except OSError as e:  # read_regular_file names the file itself; a raw OSError may not
                    raise InputFileError(f"cannot read image {f}: {e.strerror or e}") from None
                sink.write({"__key__": f"{i:09d}", ext: data, "path.txt": str(f.relative_to(src))})
        shards = sorted(p.name for p in out.glob(f"{prefix}-*.tar"))
        index = {"images": len(files), "shards": shards, "max_count": max_count, "max_size": max_size,
                 "train_shards": f"{out}/{prefix}-{{000000..{len(shards) - 1:06d}}}.tar"}
        tmp = out / ".index.json.tmp"
        tmp.write_text(json.dumps(index, indent=2))
        tmp.replace(out / "index.json")  # the index appears whole, last: shards without it are never left behind
    except BaseException as e:
        # out held no shards when we started (checked above): every one there now is ours and incomplete
        for p in out.glob(f"{prefix}-*.tar"):
            p.unlink(missing_ok=True)
        (out / ".index.json.tmp").unlink(missing_ok=True)
        if isinstance(e, (OSError, InputFileError)):
            raise InputFileError(f"{e}; no shards were written (fix or remove that file and rerun)") from None
        raise
    return index


class ShardedImageDataset(IterableDataset):
    """Random training crops streamed from WebDataset shards (one pass per epoch; with max_steps the run decides)."""

    def __init__(self, urls: str, patch_size: int | None, shuffle_buffer: int = 1000, name: str = "train"):
        if not urls:
            raise ValueError("data.layout=shards needs data.train_shards, e.g. /data/shards/shard-{000000..000099}.tar "
                             "(make them with `compresslab make-shards <image folder> <out>`)")
        self.urls, self.patch_size, self.shuffle_buffer, self.name = urls, patch_size, int(shuffle_buffer), name

    def __iter__(self) -> Iterator[Tensor]:
        import webdataset as wds

        ds = wds.WebDataset(self.urls, shardshuffle=100, nodesplitter=wds.split_by_node,
                            workersplitter=wds.split_by_worker, empty_check=False, handler=wds.warn_and_continue)
        if self.shuffle_buffer > 1:
            ds = ds.shuffle(self.shuffle_buffer)
        for sample in ds:
            data = next((sample[k] for k in IMAGE_KEYS if k in sample), None)
            if data is None:
                continue
            try:
                with Image.open(io.BytesIO(data)) as img:
                    x = image_to_tensor(to_rgb8(img))
            except Exception as e:  # noqa: BLE001 - a bad member must not stop an epoch (as for image folders)
                log.warning("%s: skipping undecodable sample %s (%s)", self.name, sample.get("__key__"), e)
                continue
            yield crop_patch(x, self.patch_size, train=True)
