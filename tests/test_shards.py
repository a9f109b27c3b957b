"""WebDataset shards: an image folder packed losslessly, and training streamed from the shards."""

import pytest

import json
import tarfile

from compresslab.cli import main
from compresslab.data.images import find_images
from compresslab.data.shards import ShardedImageDataset
from conftest import train


def test_make_shards_packs_the_original_bytes_and_streams_crops(data_root, tmp_path, capsys):
    src = tmp_path / "images"
    src.mkdir()
    originals = find_images(data_root / "train")[:7]
    for f in originals:
        (src / f.name).write_bytes(f.read_bytes())
    out = tmp_path / "shards"
    assert main(["make-shards", str(src), str(out), "--max-count", "3"]) == 0
    index = json.loads((out / "index.json").read_text())
    assert index["images"] == 7 and index["shards"] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    assert "data.train_shards=" in capsys.readouterr().out
    packed = {}
    for shard in index["shards"]:
        with tarfile.open(out / shard) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        for name, data in members.items():
            if name.endswith(".path.txt"):
                packed[data.decode()] = members[name.replace(".path.txt", ".png")]
    assert packed == {f.name: f.read_bytes() for f in originals}  # lossless: the files themselves
    crops = list(ShardedImageDataset(index["train_shards"], patch_size=64, shuffle_buffer=4))
    assert len(crops) == 7 and all(c.shape == (3, 64, 64) and 0 <= c.min() and c.max() <= 1 for c in crops)
    assert main(["make-shards", str(src), str(out)]) == 2  # never over existing shards


@pytest.mark.slow
def test_training_streams_from_shards(data_root, tmp_path):
    out = tmp_path / "shards"
    main(["make-shards", str(data_root / "train"), str(out), "--max-count", "200"])
    pattern = json.loads((out / "index.json").read_text())["train_shards"]
    res = train(tmp_path / "run", ["data.layout=shards", f"data.train_shards='{pattern}'", "data.num_workers=2",
                                   "callbacks.rd_eval.enabled=false", "trainer.max_steps=4"])
    assert res["global_step"] == 4
