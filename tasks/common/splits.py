"""Which role a split name plays, and the validation split held out of data that has none of its own.

Data without a validation split of its own (one annotation file, a VOC folder without ImageSets/) holds out
`val_fraction` of its images, drawn with a fixed seed (`validation_mask`); the evaluation dataset built from it
carries a `HeldOutSplit`, which the data module logs and lists in its run folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

# Data without a validation split of its own holds out `val_fraction` of its images, drawn with this fixed seed,
# and lists them in this file of the run folder.
DEFAULT_VAL_FRACTION = 0.1
VAL_SPLIT_SEED = 0
VAL_SPLIT_FILE = "val_split.txt"


def validation_mask(count: int, fraction: float, source: str) -> np.ndarray:
    """bool [count]: which of `count` images (in a fixed order) are held out for validation: round(fraction *
    count) of them, at least 1 and at most count - 1, drawn with VAL_SPLIT_SEED, so that every run, and the
    training and validation datasets of one run, agree. `source` names the data in the error for < 2 images."""
    if count < 2:
        raise ValueError(f"{source} has {count} image(s); holding out a validation split needs at least 2")
    held_out = min(max(1, round(fraction * count)), count - 1)
    mask = np.zeros(count, dtype=bool)
    mask[np.random.default_rng(VAL_SPLIT_SEED).permutation(count)[:held_out]] = True
    return mask


def split_role(data: Any, split: str, train: bool) -> Literal["train", "val", "test"]:
    """Which of the data's splits a format's `build(data, split, transform, train)` is asked for, by name: the train
    split (also with the evaluation transform, as int8 calibration reads it), the val split, or (any other name)
    the test split."""
    if train or split == data.train_split:
        return "train"
    return "val" if split == data.val_split else "test"


@dataclass(frozen=True)
class HeldOutSplit:
    """A validation split drawn from data that has none (`validation_mask`): what a dataset built from its
    validation part carries as `held_out`, so that the data module can write and log it."""

    source: str  # the annotation file or folder it was drawn from
    val_names: list[str]  # the validation images' file names
    train_count: int
    fraction: float
