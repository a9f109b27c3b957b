"""Stage-2 training on cached latents: with g_a frozen, the latents of the training crops never change, so they are
computed once (``cache_crops_per_image`` random crops + flips per image) and the side-info codec trains on them.
Validation still runs the whole model on images."""

from __future__ import annotations

import logging

import torch
from torch.utils.data import DataLoader, Dataset

from compresslab.data.module import ImageDataModule
from compresslab.data.resumable import ResumableDataLoader, split_index

log = logging.getLogger(__name__)


class LatentDataset(Dataset):
    def __init__(self, latents: torch.Tensor, image_hw: tuple[int, int]):
        self.latents, self.image_hw = latents, image_hw

    def __len__(self) -> int:
        return self.latents.shape[0]

    def __getitem__(self, i: int | tuple[int, int]) -> dict:
        i, _ = split_index(i)  # a cached latent has no crop of its own to draw
        return {"y": self.latents[i], "image_hw": tuple(self.image_hw)}


def collate_latents(items: list[dict]) -> dict:
    """The latents stacked; ``image_hw`` stays one pair of Python ints (a dataset has one crop size), so a traced
    step (speed.compile=step) reads it without a tensor-to-int graph break."""
    return {"y": torch.stack([it["y"] for it in items]), "image_hw": tuple(int(v) for v in items[0]["image_hw"])}


class LatentCacheDataModule(ImageDataModule):
    """An ImageDataModule whose training loader yields cached g_a latents of its crops."""

    def __init__(self, encoder: torch.nn.Module, crops_per_image: int = 4, **data_cfg):
        super().__init__(**data_cfg)
        self.encoder = encoder
        self.crops_per_image = int(crops_per_image)
        self.latent_set: LatentDataset | None = None

    @torch.no_grad()
    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if self.latent_set is not None:
            return
        was_training = self.encoder.training
        self.encoder.eval()
        loader = DataLoader(self.train_set, batch_size=32, shuffle=False, num_workers=self.num_workers)
        chunks = [self.encoder(x) for _ in range(self.crops_per_image) for x in loader]
        self.encoder.train(was_training)
        latents = torch.cat(chunks)
        log.info("cached %d training latents %s (%.1f MB)", latents.shape[0], tuple(latents.shape[1:]),
                 latents.numel() * 4 / 2**20)
        self.latent_set = LatentDataset(latents, (self.patch_size, self.patch_size))

    def train_dataloader(self) -> DataLoader:
        if self.resumable and len(self.latent_set) >= self.batch_size:  # position saved with the checkpoint
            return ResumableDataLoader(self.latent_set, self.batch_size, seed=self.seed, num_workers=0,
                                       collate_fn=collate_latents)
        return DataLoader(self.latent_set, batch_size=self.batch_size, shuffle=True, drop_last=True, num_workers=0,
                          collate_fn=collate_latents)
