"""Exact resume (issue 32): a run killed at a checkpoint and resumed sees the same batches and, on the CPU, has the
same training loss at every later step as the uninterrupted run: the data order, the crops and the position in the
epoch travel with the checkpoint (compresslab.data.resumable), and so does every rank's RNG."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from compresslab.data.resumable import ResumableDataLoader, ResumableSampler, split_index
from conftest import run_py, train

RESUMABLE = ["callbacks.rd_eval.enabled=false", "callbacks.checkpoint.save_top_k=-1"]  # best-{step}.ckpt at 4, 8, ...


class Echo(Dataset):
    """Returns what it is asked for: (index, crop seed)."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index):
        i, seed = split_index(index)
        return torch.tensor([i, seed % 1000003])


def batches(loader, k: int | None = None) -> list[list[int]]:
    out = []
    for b in loader:
        out.append(b[:, 0].tolist() + b[:, 1].tolist())
        if k is not None and len(out) == k:
            break
    return out


def train_losses(run_dir: Path) -> dict[int, float]:
    """step -> train/loss of every metrics file of a run (a resumed run keeps its first part beside it)."""
    out: dict[int, float] = {}
    for f in sorted(run_dir.glob("metrics*.csv")):
        for row in csv.DictReader(f.open()):
            if row.get("train/loss"):
                out[int(row["step"])] = float(row["train/loss"])
    return out


def test_ranks_share_out_one_permutation_with_their_crop_seeds():
    ds = Echo(10)
    whole = list(ResumableSampler(ds, seed=3, num_replicas=1, rank=0))
    shards = [list(ResumableSampler(ds, seed=3, num_replicas=2, rank=r)) for r in (0, 1)]
    assert sorted(i for i, _ in whole) == list(range(10))
    assert sorted(shards[0] + shards[1]) == sorted(whole)  # same (index, seed) pairs, split between the ranks
    again = ResumableSampler(ds, seed=3, num_replicas=1, rank=0)
    again.set_epoch(1)
    assert list(again) != whole  # another epoch, another order


@pytest.mark.parametrize("workers", [0, 2])
def test_a_restored_loader_yields_the_rest_of_the_epoch(workers):
    ref = ResumableDataLoader(Echo(20), batch_size=3, seed=7, num_workers=workers)
    full = batches(ref)
    assert len(full) == 6  # drop_last
    cut = ResumableDataLoader(Echo(20), batch_size=3, seed=7, num_workers=workers)
    batches(cut, 4)
    state = cut.state_dict()
    assert (state["epoch"], state["batches"]) == (0, 4)
    resumed = ResumableDataLoader(Echo(20), batch_size=3, seed=7, num_workers=workers)
    resumed.load_state_dict(state)
    assert batches(resumed) == full[4:]
    assert resumed.state_dict()["batches"] == 6


def test_a_state_saved_at_the_end_of_an_epoch_resumes_with_the_next():
    ref = ResumableDataLoader(Echo(12), batch_size=4, seed=1)
    batches(ref)
    state = ref.state_dict()
    ref.sampler.set_epoch(1)
    epoch1 = batches(ref)
    resumed = ResumableDataLoader(Echo(12), batch_size=4, seed=1)
    resumed.load_state_dict(state)
    assert batches(resumed) == epoch1


def test_another_batch_size_continues_at_the_same_share_of_the_epoch(caplog):
    cut = ResumableDataLoader(Echo(24), batch_size=4, seed=1)
    batches(cut, 3)  # 12 samples
    resumed = ResumableDataLoader(Echo(24), batch_size=2, seed=1)
    resumed.load_state_dict(cut.state_dict())
    assert "not exactly where it stopped" in caplog.text
    assert len(batches(resumed)) == 6  # 12 of 24 samples left, in batches of 2


@pytest.mark.slow
def test_killed_and_resumed_runs_have_the_uninterrupted_loss_at_every_step(tmp_path):
    """16 steps, checkpoints at 4, 8, 12: resumed from each, every later step's loss equals the uninterrupted run's
    (to the last bit: same CPU, same thread count)."""
    full = train(tmp_path / "full", ["model=factorized", "trainer.max_steps=16", *RESUMABLE])
    ref = train_losses(Path(full["run_dir"]))
    assert sorted(ref) == list(range(16))
    for k in (4, 8, 12):
        res = train(tmp_path / f"from{k}", ["model=factorized", "trainer.max_steps=16", *RESUMABLE,
                                            f"ckpt_path={tmp_path}/full/checkpoints/best-{k}.ckpt"])
        assert res["global_step"] == 16
        got = train_losses(Path(res["run_dir"]))
        assert sorted(got) == list(range(k, 16))
        assert {s: got[s] for s in got} == {s: ref[s] for s in range(k, 16)}, f"resumed from step {k}"


@pytest.mark.slow
def test_the_cached_latent_stage_resumes_exactly(tmp_path, factorized_ckpt):
    """Adaptive stage 2 trains on cached latents (LatentCacheDataModule): its order is resumable too."""
    common = ["model=adaptive", f"model.base_ckpt={factorized_ckpt}", "trainer.max_steps=12", *RESUMABLE]
    full = train(tmp_path / "full", common)
    ref = {s: v for s, v in _rate_losses(Path(full["run_dir"])).items()}
    assert sorted(ref) == list(range(12))
    res = train(tmp_path / "from8", common + [f"ckpt_path={tmp_path}/full/checkpoints/best-8.ckpt"])
    got = _rate_losses(Path(res["run_dir"]))
    assert got == {s: ref[s] for s in range(8, 12)}


def _rate_losses(run_dir: Path) -> dict[int, float]:
    out = {}
    for row in csv.DictReader((run_dir / "metrics.csv").open()):
        if row.get("train/rate_loss"):
            out[int(row["step"])] = float(row["train/rate_loss"])
    return out


DDP = ["train.py", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "debug=smoke", "logger=csv",
       "model=factorized", "trainer.max_steps=8", "threads=1", *RESUMABLE]


@pytest.mark.slow
def test_ddp_resume_is_exact_on_every_rank(tmp_path):
    """Two gloo ranks: the resumed run's rank-0 loss equals the uninterrupted one's at every step after the
    checkpoint. Rank 1's batches reach rank 0 through the averaged gradients, so this holds only when each rank
    gets its own share of the data back at the right position (and its RNG state, saved per rank)."""
    r = run_py(DDP + [f"hydra.run.dir={tmp_path}/full"], timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "parameters identical on 2 ranks" in r.stdout + r.stderr
    ref = train_losses(tmp_path / "full")
    r = run_py(DDP + [f"hydra.run.dir={tmp_path}/from4", f"ckpt_path={tmp_path}/full/checkpoints/best-4.ckpt"],
               timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    got = train_losses(tmp_path / "from4")
    assert sorted(got) == list(range(4, 8))
    assert got == {s: ref[s] for s in range(4, 8)}
