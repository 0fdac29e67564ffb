"""The DataLoader of every task's split: resumable seeded order for training, sharded plain order for evaluation."""

from __future__ import annotations

import gc
from collections.abc import Callable

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from tasks.common.distributed import evaluation_sampler
from tasks.common.resume import Position, ResumableLoader, ResumableSampler


def freeze_inherited_objects(worker_id: int) -> None:
    """In each DataLoader worker: move the Python objects it inherited through fork (the main process's heap, e.g.
    the evaluation split's `coco_gt`) to the collector's permanent generation. A full collection would otherwise
    visit, and so copy into the worker, every page holding them: the growth the flat records avoid."""
    gc.freeze()


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
    says (see tasks/common/resume.py); evaluation: plain order, unpadded shards under torch.distributed."""
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
        worker_init_fn=freeze_inherited_objects,
    )
