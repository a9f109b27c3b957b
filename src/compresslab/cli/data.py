"""``compresslab fetch | make-shards | download-kodak``: datasets on disk."""

from __future__ import annotations

import sys
from pathlib import Path

def cmd_fetch(args) -> int:
    from compresslab.data.fetch import FetchError, fetch_many, sources

    if args.list or not args.names:
        for name, src in sources().items():
            print(f"{name:16s} {len(src.files):4d} files  {src.about}")
        return 0
    try:
        done = fetch_many(args.names, args.root, mirror=args.mirror)
    except (FetchError, OSError) as e:  # OSError: a full disk or an unwritable root, named by the message
        print(f"error: {e}", file=sys.stderr)
        return 1
    for name, dest in done.items():
        print(f"{name}: ready under {dest}")
    return 0


def cmd_make_shards(args) -> int:
    from compresslab.data.shards import write_shards

    index = write_shards(args.src, args.out, max_count=args.max_count, max_size=args.max_size_mb * 1e6)
    print(f"{index['images']} images in {len(index['shards'])} shards under {args.out}; train with\n"
          f"  python train.py data.layout=shards \"data.train_shards='{index['train_shards']}'\"")  # braces: quoted
    return 0


def cmd_download_kodak(args) -> int:
    """Kept for old scripts: `compresslab fetch kodak` into the folder's parent (checksums, resume)."""
    from compresslab.data.fetch import FetchError, fetch, sources

    dest = Path(args.dest)
    if dest.name != "kodak":
        print(f"error: give the kodak folder itself (<data root>/kodak), not {dest}", file=sys.stderr)
        return 2
    try:
        fetch(sources()["kodak"], dest.parent)
    except FetchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"Kodak ready in {dest}")
    return 0


def add_commands(sub) -> None:
    shards_p = sub.add_parser("make-shards", help="pack an image folder into WebDataset tar shards (data.layout=shards)")
    shards_p.add_argument("src", help="image folder (recursive)")
    shards_p.add_argument("out", help="empty output folder")
    shards_p.add_argument("--max-count", type=int, default=10_000, help="images per shard")
    shards_p.add_argument("--max-size-mb", type=float, default=1000.0, help="bytes per shard (MB)")
    shards_p.set_defaults(func=cmd_make_shards)
    fetch_p = sub.add_parser("fetch", help="download datasets or CompressAI's anchors (checksums, resume)")
    fetch_p.add_argument("names", nargs="*", help="kodak, anchors, clic2020, div2k (none: list them)")
    fetch_p.add_argument("--root", help="target folder (default: the data root, $COMPRESSLAB_DATA or ./data)")
    fetch_p.add_argument("--mirror", help="serve every URL from this host, same paths ($COMPRESSLAB_MIRROR)")
    fetch_p.add_argument("--list", action="store_true")
    fetch_p.set_defaults(func=cmd_fetch)

    kodak_p = sub.add_parser("download-kodak", help="download the Kodak test set (needs network)")
    kodak_p.add_argument("dest", nargs="?", default="data/kodak")
    kodak_p.set_defaults(func=cmd_download_kodak)
