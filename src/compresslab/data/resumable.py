"""A training loader whose position and randomness travel with the checkpoint, so a killed run resumes exactly.

Three things decide what a training step sees, and each is made a function of what the checkpoint holds:

* **the order**: ``ResumableSampler`` (a ``DistributedSampler``, so Lightning leaves it in place under DDP) draws the
  epoch's permutation from ``seed + epoch`` alone, never from the global RNG;
* **the crops**: each index travels with its own crop seed, ``(index, seed)``, drawn from the same per-epoch
  generator; the dataset crops with a generator of that seed, so a sample's crop depends on nothing else (not on
  the worker that loads it, nor on how many samples came before it in this process);
* **the position**: ``ResumableDataLoader`` has Lightning's ``state_dict``/``load_state_dict`` (the ``_Stateful``
  protocol that ``FitLoop`` saves under ``loops.fit_loop.state_dict.combined_loader``): the epoch and the batches
  it has yielded in it. On resume the sampler skips those samples.

The model's own noise (quantisation noise) uses the global RNG, which ``RateDistortionModule`` saves per rank;
the loaders are given their own ``torch.Generator`` so creating an iterator never draws from it.

Lightning's ``_PrefetchDataFetcher`` does not prefetch a loader with a length, so "batches yielded" is exactly
"batches trained on" when a checkpoint is written.
"""

from __future__ import annotations

import logging
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

log = logging.getLogger(__name__)

STATE_FORMAT = 1


def split_index(index: Any) -> tuple[int, int | None]:
    """``i`` or ``(i, crop_seed)`` (what ResumableSampler yields) -> (i, crop_seed or None)."""
    if isinstance(index, (tuple, list)):
        return int(index[0]), int(index[1])
    return int(index), None


def crop_generator(seed: int | None) -> torch.Generator | None:
    if seed is None:
        return None
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


class ResumableSampler(DistributedSampler):
    """Shuffled indices, each with its crop seed, as a pure function of (seed, epoch, position); ``skip`` samples
    are left out of the next iteration (set by ``ResumableDataLoader.load_state_dict``). The permutation is the
    one ``DistributedSampler(shuffle=True, seed=seed)`` draws, padded and sharded across ranks the same way."""

    def __init__(self, dataset: Dataset, seed: int, num_replicas: int | None = None, rank: int | None = None,
                 drop_last: bool = False):
        world, me = _world()
        super().__init__(dataset, num_replicas=world if num_replicas is None else num_replicas,
                         rank=me if rank is None else rank, shuffle=True, seed=int(seed), drop_last=drop_last)
        self.skip = 0

    def __iter__(self) -> Iterator[tuple[int, int]]:
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        n = len(self.dataset)  # type: ignore[arg-type]
        order = torch.randperm(n, generator=g).tolist()
        seeds = torch.randint(0, 2**62, (self.total_size,), generator=g).tolist()
        if self.drop_last:
            order = order[: self.total_size]
        else:
            pad = self.total_size - len(order)
            order += (order * (pad // max(len(order), 1) + 1))[:pad]
        mine = list(zip(order[self.rank: self.total_size: self.num_replicas],
                        seeds[self.rank: self.total_size: self.num_replicas]))
        skip, self.skip = self.skip, 0
        return iter(mine[skip:])


class ResumableDataLoader(DataLoader):
    """A DataLoader over a ``ResumableSampler`` whose position (epoch, batches yielded) Lightning saves and
    restores with the checkpoint."""

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, drop_last: bool = True, **kwargs: Any):
        sampler = ResumableSampler(dataset, seed)
        # the loader's own generator: creating its iterator draws its base seed from here, not the global RNG
        generator = torch.Generator()
        generator.manual_seed(int(seed))
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, generator=generator,
                         **kwargs)
        self._yielded = 0
        self._pending: dict[str, Any] | None = None

    def __iter__(self):
        sampler: ResumableSampler = self.sampler  # type: ignore[assignment]
        start = 0
        if self._pending is not None:
            sampler.set_epoch(self._pending["epoch"])
            start = self._pending["batches"]
            sampler.skip = start * int(self.batch_size or 1)
            self._pending = None
        self._yielded = start
        return self._count(super().__iter__())

    def _count(self, it):
        for batch in it:
            self._yielded += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        s: ResumableSampler = self.sampler  # type: ignore[assignment]
        return {"format": STATE_FORMAT, "epoch": int(s.epoch), "batches": int(self._yielded),
                "batch_size": int(self.batch_size or 1), "num_replicas": int(s.num_replicas), "seed": int(s.seed),
                "dataset_len": len(self.dataset)}  # type: ignore[arg-type]

    def load_state_dict(self, state: dict[str, Any]) -> None:
        s: ResumableSampler = self.sampler  # type: ignore[assignment]
        epoch, batches = int(state["epoch"]), int(state["batches"])
        same = (state.get("num_replicas") == s.num_replicas and state.get("batch_size") == self.batch_size
                and state.get("dataset_len") == len(self.dataset) and state.get("seed") == s.seed)  # type: ignore
        if not same:
            # another world size / batch size / data set / seed: continue at the same share of the epoch's samples
            # (the order is the one of the new setting; exact only when nothing changed)
            consumed = batches * int(state.get("batch_size", 1)) * int(state.get("num_replicas", 1))
            batches = consumed // max(int(self.batch_size or 1) * s.num_replicas, 1)
            log.warning("resuming the data order with %s (saved with %s): continues at batch %d of epoch %d, not "
                        "exactly where it stopped", self._setting(), {k: state.get(k) for k in
                        ("num_replicas", "batch_size", "dataset_len", "seed")}, batches, epoch)
        if batches >= len(self):  # the checkpoint was written at the end of an epoch
            epoch, batches = epoch + 1, 0
        self._pending = {"epoch": epoch, "batches": batches}
        self._yielded = batches

    def _setting(self) -> dict[str, Any]:
        s: ResumableSampler = self.sampler  # type: ignore[assignment]
        return {"num_replicas": s.num_replicas, "batch_size": self.batch_size,
                "dataset_len": len(self.dataset), "seed": s.seed}  # type: ignore[arg-type]
