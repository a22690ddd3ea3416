"""Training data: whole batches sliced from the decoded, memory-mapped cache.

The dataset is decoded once into uint8 arrays (:mod:`latentcam.data.cache`); every
training batch is one fancy-index into those arrays (in the main process on a CPU)
(:meth:`latentcam.data.dataset.FaceDataset.batch`), with no per-item Python work and no
image decoding per step (decoding PNGs every step costs 8-15% on 2 cores, and worker
processes make it worse there, hence no workers on the CPU by default). On a GPU the
batches are sliced by worker processes ahead of the model and copied from page-locked
memory (:func:`loader_workers`). Only the fields the model kind uses are sliced; images
and labels travel as uint8 and become float in [0, 1] and int64 after the transfer to the
device (4x and 8x less to copy). With ``data.hflip`` the training batches are then mirrored
left-right at random on the device (labels too, left/right parts swapped), with flags drawn
from ``(train.seed, step, rank)`` so that a seeded run, and its resume, flip the same images.

Shuffling uses a generator seeded with ``train.seed + epoch``; under DDP every process
draws the same permutation and takes its own shard of it (padded to equal length, as
``DistributedSampler`` does), so Lightning's sampler replacement is switched off.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from latentcam.config import RunConfig
from latentcam.data.augment import flip_lr
from latentcam.data.classes import NUM_CLASSES
from latentcam.data.dataset import FaceData, FaceDataset
from latentcam.errors import DataError
from latentcam.models.protocol import has_seg_output, is_conditional
from latentcam.models.registry import capabilities_of
from latentcam.runs import open_data
from latentcam.training.module import seg_target_is_binary

log = logging.getLogger(__name__)


def check_labels(cfg: RunConfig, data: FaceData) -> None:
    """Raise :class:`DataError` when the data lacks what the model learns from."""
    caps = capabilities_of(cfg.model)
    if is_conditional(caps) and data.attrs is None:
        raise DataError(
            f"a cvae is conditioned on the 40 CelebA attributes, but {data.root} "
            f"({data.layout} layout) has no attribute file; use data with attributes "
            "(CelebA, CelebAMask-HQ, synth) or --model vae"
        )
    if has_seg_output(caps) and data.parts is None:
        raise DataError(
            f"a segvae learns face-part masks, but {data.root} ({data.layout} layout) has "
            "none; use data with masks (CelebAMask-HQ, paired folders, synth)"
        )


def batch_keys(cfg: RunConfig) -> tuple[str, ...]:
    """The batch fields the model of ``cfg`` learns from (others are not copied)."""
    caps = capabilities_of(cfg.model)
    return (
        "image",
        *(("attrs",) if is_conditional(caps) else ()),
        *(("parts",) if has_seg_output(caps) else ()),
    )


class ShardedBatches(Sampler[np.ndarray]):
    """Batches of positions (arrays of shape (B,)) over ``num_items`` items.

    Args:
        num_items: items in the split.
        batch_size: items per batch (per process).
        shuffle: draw a new permutation each epoch from ``seed + epoch``.
        seed: the shuffle seed (the same in every process).
        drop_last: drop a final batch smaller than ``batch_size``.
        rank, world_size: this process's shard of every permutation.
        pad: repeat items so that every shard has the same length (needed for training
            under DDP, where every process must take the same number of steps).
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = True,
    ) -> None:
        self.num_items = num_items
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.pad = pad
        self.epoch = 0
        #: Batches to skip at the start of the next epoch only (a resume mid-epoch).
        self.start_batch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch."""
        self.epoch = epoch

    def _shard(self) -> np.ndarray:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_items, generator=generator).numpy()
        else:
            order = np.arange(self.num_items)
        if self.world_size > 1 and self.pad and self.num_items:
            total = math.ceil(self.num_items / self.world_size) * self.world_size
            order = np.resize(order, total)  # repeats from the start, like DistributedSampler
        return order[self.rank :: self.world_size]

    def _shard_length(self) -> int:
        if self.world_size > 1 and self.pad:
            return math.ceil(self.num_items / self.world_size)
        return len(range(self.rank, self.num_items, self.world_size))

    def __iter__(self) -> Iterator[np.ndarray]:
        shard = self._shard()
        first, self.start_batch = self.start_batch * self.batch_size, 0
        for start in range(first, len(shard), self.batch_size):
            positions = shard[start : start + self.batch_size]
            if self.drop_last and len(positions) < self.batch_size:
                return
            yield positions

    def __len__(self) -> int:
        length = self._shard_length()
        if self.drop_last:
            return length // self.batch_size
        return math.ceil(length / self.batch_size)


class ResumableLoader(DataLoader[Any]):
    """A DataLoader over :class:`ShardedBatches` that resumes mid-epoch.

    Its position needs no state of its own: every epoch has ``len(sampler)`` steps, so the
    restored global step says how many batches of the current epoch were already used
    (:meth:`FaceDataModule.train_dataloader` sets ``sampler.start_batch``); the epoch's
    permutation follows from the seed. ``state_dict``/``load_state_dict`` mark it as
    resumable for Lightning.
    """

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        return None


#: Loader processes per training process on a GPU when ``data.num_workers`` is -1 (auto).
GPU_WORKERS = 4


def loader_workers(setting: int, on_gpu: bool, processes_per_node: int = 1) -> int:
    """The DataLoader's ``num_workers`` for ``data.num_workers = setting``.

    -1 (auto): 0 on the CPU, where slicing a batch in-process is fastest and workers would
    take cores from the model; on a GPU :data:`GPU_WORKERS` per process (at most the node's
    cores shared among its processes), so the next batches are sliced while the GPU works.
    Any other value is used as given.
    """
    if setting >= 0:
        return setting
    if not on_gpu:
        return 0
    cores = os.cpu_count() or 1
    return max(0, min(GPU_WORKERS, cores // max(1, processes_per_node) - 1))


class _Batches(Dataset[dict[str, torch.Tensor]]):
    """Map-style view whose items are whole batches: ``dataset[positions]``."""

    def __init__(self, dataset: FaceDataset, keys: tuple[str, ...]) -> None:
        self.dataset = dataset
        self.keys = keys

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, positions: np.ndarray) -> dict[str, torch.Tensor]:
        batch = self.dataset.batch(positions, uint8=True, keys=self.keys)
        return {key: batch[key] for key in self.keys}


class FaceDataModule(pl.LightningDataModule):
    """Train/val batches of a run's dataset (see the module docstring).

    Batches are dicts: ``image`` (B, 3, S, S) float in [0, 1] once on the device; for a
    cvae ``attrs`` (B, 40) float in {0, 1}; for a segvae ``parts`` (B, S, S) int64 (class
    ids, or the paper's binary mask when the model predicts one).

    Attributes:
        data: the loaded :class:`FaceData` (after :meth:`setup`).
        attr_means: (40,) mean training attributes in {0, 1}, or None without attributes.
    """

    def __init__(self, cfg: RunConfig, progress: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        self.progress = progress
        self.data: FaceData | None = None
        self.attr_means: list[float] | None = None
        self.train_set: FaceDataset | None = None
        self.val_set: FaceDataset | None = None

    def prepare_data(self) -> None:
        """Decode the dataset into the cache (once per node, before the other processes)."""
        if self.data is None:  # train() reads it before Lightning asks
            self.data = open_data(self.cfg, progress=self.progress)

    def setup(self, stage: str) -> None:
        if self.train_set is not None and self.val_set is not None:
            return  # done already (the splits do not depend on the stage)
        if self.data is None:
            self.data = open_data(self.cfg, progress=False)
        data, cfg = self.data, self.cfg
        check_labels(cfg, data)
        binary = has_seg_output(capabilities_of(cfg.model)) and seg_target_is_binary(cfg)
        self.train_set = FaceDataset(data, "train", binary_mask=binary, limit=cfg.data.limit)
        self.val_set = FaceDataset(data, "val", binary_mask=binary, limit=cfg.data.limit)
        if len(self.train_set) == 0 or len(self.val_set) == 0:
            raise DataError(
                f"{data.root} gives {len(self.train_set)} training and {len(self.val_set)} "
                "validation images; both are needed (raise data.val_fraction, data.limit or "
                "the number of images)"
            )
        if data.attrs is not None:
            means = np.asarray(data.attrs[self.train_set.indices], dtype=np.float64).mean(0)
            self.attr_means = [float(v) for v in means]
        log.info(
            "data %s (%s): %d train / %d val images at %d px",
            data.root,
            data.layout,
            len(self.train_set),
            len(self.val_set),
            data.size,
        )

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def _loader(self, dataset: FaceDataset | None, train: bool) -> ResumableLoader:
        assert dataset is not None, "setup() runs before the dataloaders"
        rank, world_size = self._rank()
        batch_size = self.cfg.data.batch_size
        sampler = ShardedBatches(
            len(dataset),
            batch_size,
            shuffle=train,
            seed=self.cfg.train.seed,
            # a last batch of 1-2 images gives BatchNorm useless statistics; keep it only
            # when the split is smaller than one batch
            drop_last=train and len(dataset) >= batch_size * world_size,
            rank=rank,
            world_size=world_size,
            pad=train,
        )
        if train and self.trainer is not None and len(sampler):
            sampler.start_batch = self.trainer.global_step % len(sampler)  # > 0 on a resume
        trainer = self.trainer
        on_gpu = trainer is not None and trainer.strategy.root_device.type == "cuda"
        per_node = trainer.num_devices if trainer is not None else 1
        workers = loader_workers(self.cfg.data.num_workers, on_gpu, per_node)
        return ResumableLoader(
            _Batches(dataset, batch_keys(self.cfg)),
            batch_size=None,  # the sampler yields whole batches
            sampler=sampler,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=on_gpu,  # page-locked batches: the copy to the GPU runs asynchronously
            # its own generator: creating an iterator then draws nothing from the global
            # one, which only z's noise uses (so a resumed run draws what a straight one does)
            generator=torch.Generator().manual_seed(self.cfg.train.seed),
        )

    def train_dataloader(self) -> DataLoader[Any]:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader[Any]:
        return self._loader(self.val_set, train=False)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """uint8 images -> float32 in [0, 1] and uint8 labels -> int64, on the device; with
        ``data.hflip``, training images (and labels) mirrored at random (see :meth:`flips`)."""
        image = batch["image"]
        if image.dtype == torch.uint8:
            batch["image"] = image.float().div_(255.0)
        parts = batch.get("parts")
        if parts is not None and parts.dtype == torch.uint8:
            batch["parts"] = parts.long()
        trainer = self.trainer
        if self.cfg.data.hflip and trainer is not None and trainer.training:
            flags = self.flips(trainer.global_step, trainer.global_rank, len(batch["image"]))
            classes = 1 if seg_target_is_binary(self.cfg) else NUM_CLASSES
            batch["image"], mirrored = flip_lr(batch["image"], batch.get("parts"), flags, classes)
            if mirrored is not None:
                batch["parts"] = mirrored
        return batch

    def flips(self, step: int, rank: int, n: int) -> torch.Tensor:
        """(n,) bool: which images of the batch of ``step`` (on process ``rank``) to mirror,
        each with probability 1/2, drawn from ``(train.seed, step, rank)`` alone: the same
        flips in every run of a seed, and after a resume."""
        rng = np.random.default_rng([self.cfg.train.seed, step, rank])
        return torch.from_numpy(rng.random(n) < 0.5)
