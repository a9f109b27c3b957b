"""Training-set layouts (conf/data/*.yaml) on small synthetic trees in each dataset's own layout."""

import numpy as np
import pytest
from PIL import Image

from compresslab.data.images import DataLayoutError

from compresslab.data.module import build_datamodule
from compresslab.data.layouts import split_files
from compresslab.training.run import plain as plain_cfg
from conftest import compose, train
from compresslab.conf import CONF_DIR


def _png(path, size=(96, 80), seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)


@pytest.fixture
def vimeo(tmp_path):
    root = tmp_path / "vimeo_septuplet"
    for split, entries in (("sep_trainlist.txt", ["00001/0001", "00002/0007"]), ("sep_testlist.txt", ["00003/0001"])):
        root.mkdir(exist_ok=True)
        (root / split).write_text("\n".join(entries) + "\n")
        for e in entries:
            for i in range(1, 8):
                _png(root / "sequences" / e / f"im{i}.png", seed=i)
    return root


def test_vimeo90k_lists_every_frame_of_the_listed_septuplets(data_root, vimeo):
    files = split_files(vimeo, "train", "vimeo90k", "sep_trainlist.txt")
    assert len(files) == 14 and files[0] == vimeo / "sequences" / "00001" / "0001" / "im1.png"
    assert files[-1].parts[-3:] == ("00002", "0007", "im7.png")
    dm = build_datamodule(plain_cfg(compose(["data=vimeo90k", f"data.root={vimeo}"]).data))
    dm.setup()
    assert len(dm.train_set) == 14 and len(dm.val_set) == 7
    assert dm.kodak_dir == data_root.resolve() / "kodak"  # the evaluation set stays where the anchors are
    (vimeo / "sequences" / "00002" / "0007" / "im4.png").unlink()
    with pytest.raises(DataLayoutError, match="1 of 14 frames listed in sep_trainlist.txt are missing"):
        split_files(vimeo, "train", "vimeo90k", "sep_trainlist.txt")


def test_a_missing_dataset_names_its_layout_and_source(tmp_path):
    cfg = plain_cfg(compose(["data=vimeo90k", f"data.root={tmp_path}"]).data)
    with pytest.raises(DataLayoutError, match=r"sep_trainlist.txt not found.*sequences/00001/0001/im1.png.*"
                                              r"vimeo_septuplet.zip.*Set data.root"):
        build_datamodule(cfg).setup()
    cfg = plain_cfg(compose(["data=div2k", f"data.root={tmp_path}"]).data)
    with pytest.raises(DataLayoutError, match=r"data=div2k: image folder .*DIV2K_train_HR does not exist.*"
                                              r"data.vision.ee.ethz.ch"):
        build_datamodule(cfg).setup()


@pytest.mark.parametrize("name,train_dir,val_dir", [("div2k", "DIV2K_train_HR", "DIV2K_valid_HR"),
                                                    ("clic2020", "train/professional", "valid/mobile"),
                                                    ("coco", "train2017", "val2017"),
                                                    ("imagenet", "train/n01440764", "val/n01440764"),
                                                    ("flickr2k", "Flickr2K_HR", "DIV2K_valid_HR")])
def test_folder_layouts_find_their_splits(tmp_path, name, train_dir, val_dir):
    for i in range(3):
        _png(tmp_path / train_dir / f"t{i}.png", size=(300, 280), seed=i)
    _png(tmp_path / val_dir / "v0.png", size=(300, 280))
    _png(tmp_path / "elsewhere" / "x.png")  # not part of either split
    dm = build_datamodule(plain_cfg(compose([f"data={name}", f"data.root={tmp_path}"]).data))
    dm.setup()
    assert len(dm.train_set) == 3 and len(dm.val_set) == 1
    assert all(train_dir.split("/")[0] in str(f) for f in dm.train_set.files)


@pytest.mark.slow
def test_training_runs_from_a_vimeo_tree(tmp_path, vimeo):
    res = train(tmp_path / "run", ["data=vimeo90k", f"data.root={vimeo}", "callbacks.rd_eval.enabled=false",
                                   "data.num_workers=0", "trainer.max_steps=2"])
    assert res["global_step"] == 2


def test_multi_node_slurm_launcher_takes_its_size_from_the_trainer():
    from hydra import compose as hcompose
    from hydra import initialize_config_dir

    from conftest import REPO

    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = hcompose(config_name="train", return_hydra_config=True,
                       overrides=["hydra/launcher=slurm_ddp", "trainer=ddp", "trainer.num_nodes=3", "trainer.devices=4"])
    launcher = cfg.hydra.launcher
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (3, 4, 4)
    assert launcher._target_.endswith("SlurmLauncher") and cfg.trainer.num_nodes == 3
