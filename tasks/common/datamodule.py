"""Plumbing shared by the data modules: checking the data source arguments, building loaders, the loader methods."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from tasks.common.distributed import evaluation_sampler
from tasks.common.resume import Position, ResumableLoader, ResumableSampler, trainer_position


def check_source(
    format: str, formats: Sequence[str], root: str | None, train_split: str, val_split: str, test_split: str | None
) -> None:
    """Errors that name the argument: unknown format, a root for synthetic data or none for real data."""
    if format not in formats:
        raise ValueError(f"format={format!r} is not supported; valid formats: {list(formats)}")
    if format == "synthetic" and root is not None:
        raise ValueError(f"format='synthetic' generates its own data and takes no root (got root={root!r})")
    if format == "synthetic" and (train_split, val_split, test_split or val_split) != ("train", "val", "val"):
        raise ValueError(
            "format='synthetic' has the splits 'train' and 'val' only; got "
            f"train_split={train_split!r}, val_split={val_split!r}, test_split={test_split!r}"
        )
    if format != "synthetic" and root is None:
        raise ValueError(f"format={format!r} needs root=<dataset folder>")


def make_loader(
    dataset: Dataset | None,
    name: str,
    batch_size: int,
    num_workers: int,
    collate: Callable,
    train: bool = False,
    position: Position | None = None,
) -> DataLoader:
    """Training: a `ResumableLoader` over seeded (index, augmentation seed) keys that starts where `position`
    says (see tasks/resume.py); evaluation: plain order, unpadded shards under torch.distributed."""
    if dataset is None:
        raise RuntimeError(f"{name} is not built: call setup() with the matching stage first")
    # A training set smaller than one batch still yields that one batch instead of none.
    drop_last = train and len(dataset) > batch_size
    sampler: Sampler | None
    if train:
        epoch_samples = len(dataset) // batch_size * batch_size if drop_last else len(dataset)
        sampler = ResumableSampler(len(dataset), position, epoch_samples=epoch_samples)
    else:
        sampler = evaluation_sampler(dataset)
    return ResumableLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
        collate_fn=collate,
        generator=torch.Generator(),  # worker seeds drawn from here leave the global random stream untouched
    )


class TaskDataModule(pl.LightningDataModule):
    """The four loaders of every task's data module, over the datasets its `setup` builds.

    Subclasses set `collate`, and `predict_batch_size` where predict items differ in size; evaluation uses
    `eval_batch_size` where the module has one, else `batch_size`. `data_root` is `root`, or for
    format="synthetic" the folder `generate_synthetic` returns.
    """

    collate: Callable[[list[Any]], Any] = staticmethod(default_collate)
    predict_batch_size: int | None = None  # None: the evaluation batch size
    format: str
    root: str | None
    train_split: str
    val_split: str
    test_split: str | None
    predict_root: str | None
    batch_size: int
    num_workers: int
    _data_root: Path | None = None

    def generate_synthetic(self) -> Path:
        """Generate (once, cached) this task's synthetic dataset and return its folder."""
        raise NotImplementedError

    @property
    def data_root(self) -> Path:
        """The dataset folder; for synthetic, generated on first access."""
        if self._data_root is None:
            self._data_root = self.generate_synthetic() if self.format == "synthetic" else Path(self.root or ".")
        return self._data_root

    def prepare_data(self) -> None:
        """Generate the synthetic dataset once (rank 0); real datasets must already be on disk."""
        if self.format == "synthetic":
            _ = self.data_root

    def build_dataset(self, split: str, train: bool) -> Dataset:
        """One split, with the training or the evaluation transform."""
        raise NotImplementedError

    def build_predict_dataset(self, root: str) -> Dataset:
        """The images of a folder, for predict."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets the stage needs ("fit", "validate", "test", "predict"; None builds all but predict)."""
        if stage in ("fit", None) and getattr(self, "train_dataset", None) is None:
            self.train_dataset = self.build_dataset(self.train_split, train=True)
        if stage in ("fit", "validate", None) and getattr(self, "val_dataset", None) is None:
            self.val_dataset = self.build_dataset(self.val_split, train=False)
        if stage in ("test", None) and getattr(self, "test_dataset", None) is None:
            self.test_dataset = self.build_dataset(self.test_split or self.val_split, train=False)
        if stage == "predict" and getattr(self, "predict_dataset", None) is None:
            if self.predict_root is None:
                raise ValueError("predict needs predict_root=<folder of images>")
            self.predict_dataset = self.build_predict_dataset(self.predict_root)

    def _eval_batch_size(self) -> int:
        return getattr(self, "eval_batch_size", self.batch_size)

    def _loader(self, name: str, batch_size: int, train: bool = False) -> DataLoader:
        position = trainer_position(self, batch_size) if train else None
        return make_loader(getattr(self, name, None), name, batch_size, self.num_workers, self.collate, train, position)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train_dataset", self.batch_size, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val_dataset", self._eval_batch_size())

    def test_dataloader(self) -> DataLoader:
        return self._loader("test_dataset", self._eval_batch_size())

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict_dataset", self.predict_batch_size or self._eval_batch_size())
