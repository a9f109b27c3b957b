"""Training-set layouts LIC papers use, resolved to lists of image files (the loading rules stay in ``data``).

``folder`` (default): every image under ``<root>/<split dir>`` (recursive), which also covers CLIC 2020
(train/ valid/ test/, professional and mobile together or apart), DIV2K (DIV2K_train_HR/ DIV2K_valid_HR/), Flickr2K
(Flickr2K_HR/) and ImageNet- or COCO-style trees (class sub-folders, train2017/ val2017/).
``vimeo90k``: the septuplet release: ``<root>/sep_trainlist.txt`` / ``sep_testlist.txt`` list ``00001/0001`` entries,
each a folder ``<root>/sequences/00001/0001/im1.png ... im7.png``; every listed frame is a training image, as in
CompressAI's Vimeo90kDataset. A missing folder or list file is one error naming the expected layout and the source.
"""

from __future__ import annotations

from pathlib import Path

from compresslab.data.images import DataLayoutError, find_images

LAYOUTS = ("folder", "vimeo90k", "shards")  # shards: compresslab.data.shards (train only)
VIMEO_FRAMES = tuple(f"im{i}.png" for i in range(1, 8))


def split_files(root: Path, split_dir: str, layout: str = "folder", list_file: str | None = None,
                dataset: str = "data", source: str | None = None) -> list[Path]:
    """Image files of one split (train or val) of the dataset at ``root``."""
    where = f" Get it from {source}." if source else ""
    if layout == "folder":
        if dataset == "default":  # the default layout's own explanation (train/ val/ kodak/, download-kodak)
            return find_images(root / split_dir)
        return find_images(root / split_dir, context=f"data={dataset}: ", layout_hint=(
            f"Expected layout: <data.root>/{split_dir}/**.png|jpg|jpeg|webp (sub-folders allowed).{where} "
            f"Set data.root=<folder>."))
    if layout == "vimeo90k":
        listing = root / (list_file or "sep_trainlist.txt")
        if not listing.is_file():
            raise DataLayoutError(f"data={dataset}: {listing} not found. Expected the Vimeo-90k septuplet layout: "
                                  f"<data.root>/{listing.name} listing entries like 00001/0001, and "
                                  f"<data.root>/sequences/00001/0001/im1.png ... im7.png.{where} "
                                  f"Set data.root=<the vimeo_septuplet folder>.")
        entries = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        files = [root / "sequences" / e / f for e in entries for f in VIMEO_FRAMES]
        missing = [f for f in files if not f.is_file()]
        if missing:
            raise DataLayoutError(f"data={dataset}: {len(missing)} of {len(files)} frames listed in {listing.name} "
                                  f"are missing, e.g. {missing[0]} (an incomplete extraction?)")
        return files
    raise ValueError(f"data.layout={layout!r} is not one of {LAYOUTS}")
