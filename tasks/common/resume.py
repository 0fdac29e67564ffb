"""Exact resumption of training, mid-epoch included: a seeded sample order and per-sample augmentation seeds.

A run killed mid-epoch and resumed from its last checkpoint must see the rest of that epoch exactly as the
uninterrupted run would have: the same samples in the same order, augmented the same way. So the training
order is a permutation seeded by (seed, epoch); the sampler reads the epoch and the number of batches already
done from the trainer's loop counters (which Lightning restores from the checkpoint) and skips those; and each
sample carries its own augmentation seed (from seed, epoch and index), so the result does not depend on which
worker process draws it or on how far that worker's random stream had run. The seed is Lightning's global seed
(`seed_everything`, `PL_GLOBAL_SEED`), as for its own distributed sampler.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torch.utils.data import DataLoader, Sampler

# (index, augmentation seed): what the training sampler yields and the datasets accept
SampleKey = tuple[int, int]
Position = Callable[[], tuple[int, int]]  # -> (epoch, samples already trained on in that epoch)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 32-bit augmentation seed for one sample in one epoch, independent of the others."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


class ResumableSampler(Sampler[SampleKey]):
    """Shuffled (index, seed) keys; each pass starts where `position()` says the epoch stands.

    Without a `position` (no trainer), passes count as epochs and start at the beginning. A position at or past
    `epoch_samples` (a whole epoch, as the loader's drop_last counts it) means the next epoch.
    """

    def __init__(
        self, size: int, position: Position | None = None, seed: int | None = None, epoch_samples: int | None = None
    ) -> None:
        self.size = size
        self.position = position
        self.epoch_samples = size if epoch_samples is None else epoch_samples  # what a full epoch consumes
        self.seed = int(os.environ.get("PL_GLOBAL_SEED", 0)) if seed is None else seed
        self._passes = 0

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[SampleKey]:
        epoch, done = self.position() if self.position is not None else (self._passes, 0)
        self._passes += 1
        if done >= self.epoch_samples:  # resumed from an epoch-end checkpoint: the next epoch starts
            epoch, done = epoch + 1, 0
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        for index in order[done:]:
            yield index, sample_seed(self.seed, epoch, index)


class ResumableLoader(DataLoader):
    """A DataLoader whose resumption state is the trainer's own loop counters (see `ResumableSampler`).

    Lightning asks stateful loaders for `state_dict`/`load_state_dict` and warns about mid-epoch resumption
    otherwise; here the position is already in the restored loop state, so there is nothing more to keep.
    """

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        return None


def trainer_position(datamodule: Any, batch_size: int) -> Position:
    """(epoch, samples done) of the datamodule's trainer: counters Lightning restores from a checkpoint.

    Under DDP every rank has done that many batches of its shard of the order (the resumed epoch then
    continues from the same global position; only the padding of its last batches may differ).
    """

    def position() -> tuple[int, int]:
        trainer = getattr(datamodule, "trainer", None)
        if trainer is None:
            return 0, 0
        loop = trainer.fit_loop
        done = loop.epoch_loop.batch_progress.current.processed * batch_size * trainer.world_size
        return loop.epoch_progress.current.processed, done

    return position


class ExactResume(Callback):
    """What a resumed run needs beyond Lightning's own checkpoint to continue exactly.

    - The global torch random state (dropout and MixUp/CutMix draw from it) is kept in checkpoints, so the
      resumed run draws the numbers the uninterrupted run would have drawn after the same step.
    - Lightning may create the training iterator before it restores its loop counters (estimating the number
      of steps for the schedule loads the data early); on a resumed run that iterator is started again here,
      so that the sampler reads the restored position.
    """

    def state_dict(self) -> dict[str, Any]:
        return {"torch": torch.get_rng_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "torch" in state_dict:
            torch.set_rng_state(state_dict["torch"])

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        fetcher = getattr(trainer.fit_loop, "_data_fetcher", None)  # Lightning internals; tests/tasks/test_resume.py
        if trainer.ckpt_path is not None and fetcher is not None:
            iter(fetcher)
