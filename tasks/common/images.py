"""Robust image decoding and the skip-and-count dataset base of every task, with its one bad-sample policy.

A bad sample is whatever is wrong with one sample's files (an unreadable or missing image, an image whose size
differs from its annotation, a task's own errors such as a bad mask): the `bad_sample_errors` of the dataset.
By default (`skip_bad_samples=False`) it is an error naming the file. With `skip_bad_samples=True`,
`SkippingDataset.__getitem__` logs it, counts it in `skipped_images` (a counter shared with DataLoader worker
processes) and returns the next good item instead, so a corrupt file does not stop a long training run. The batch
size therefore never changes; an evaluation loop sees the substitute item under its own `image_id`, and the
caller must report the count. `build_folder_atomically` publishes a generated dataset folder all at once, for the
synthetic generators.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from deploy.run.images import DECODE_ERRORS, IMAGE_EXTENSIONS, decode_rgb, image_files

logger = logging.getLogger(__name__)

SKIP_COUNTER_SLOTS = 256


class UnreadableImageError(OSError):
    """An image file that is missing, truncated or not an image."""


class ImageSizeMismatchError(ValueError):
    """An image whose decoded size (EXIF orientation applied) differs from the size its annotation gives."""


def size_mismatch_message(path: str | Path, image_shape: Sequence[int], width: int, height: int, source: str) -> str:
    """The error text for an image of `image_shape` (H, W, ...) that `source` says is width x height."""
    message = (
        f"image {path} is {image_shape[1]}x{image_shape[0]} (WxH, EXIF orientation applied) but {source} says "
        f"{width}x{height}; its annotations would not line up"
    )
    if (image_shape[1], image_shape[0]) == (height, width) and width != height:
        message += (
            " (sides swapped: is the file EXIF-rotated and the annotation in its stored frame? Sizes and boxes "
            "must be in the displayed frame, as annotation tools show the image)"
        )
    return message


def load_rgb(path: str | Path) -> np.ndarray:
    """`path` as an RGB uint8 array [H, W, 3], decoded by `deploy.run.images.decode_rgb` (EXIF orientation applied,
    every mode as 8-bit RGB); an UnreadableImageError naming it where it is missing or does not decode."""
    try:
        return decode_rgb(path)
    except DECODE_ERRORS as error:
        raise UnreadableImageError(f"cannot read image {path}: {error}") from error


def list_image_files(folder: str | Path) -> list[Path]:
    """Image files directly inside `folder` (extensions in IMAGE_EXTENSIONS), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    return image_files(folder)


def build_folder_atomically(final: Path, write: Callable[[Path], None]) -> Path:
    """Run `write(staging)` on a hidden temporary sibling of `final`, then rename it to `final`; return `final`.

    An interrupted run never leaves a partial folder under the final name (the staging folder is removed);
    concurrent builders (e.g. DDP ranks) are safe: the first rename wins and the others discard their copy.
    The caller decides beforehand whether `final` already holds a complete folder.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        write(staging)
        try:
            staging.rename(final)
        except OSError:
            if not final.is_dir():
                raise
            logger.info("%s was generated concurrently; using that copy", final)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return final


# What `skip_bad_samples=True` skips in every task: one sample's files, never a programming error.
BAD_SAMPLE_ERRORS: tuple[type[Exception], ...] = (UnreadableImageError, ImageSizeMismatchError)


class SkippingDataset(Dataset):
    """Dataset base: `_load_item(index)` may raise one of `bad_sample_errors`; the bad-sample policy decides.

    Items are read by index or by (index, augmentation seed); a `transform` with `set_random_seed` is seeded.

    `skip_bad_samples` False: a bad sample's error propagates (it names the file). True: the sample is replaced by
    the next good one and `skipped_images` counts every skip event (a corrupt image read in three epochs counts
    three times) across the main process and all DataLoader workers; a warning is logged the first time each
    process meets a file. Subclasses extend `bad_sample_errors` with their task's own errors.
    """

    bad_sample_errors: tuple[type[Exception], ...] = BAD_SAMPLE_ERRORS
    skip_description = "bad sample"

    def __init__(self, skip_bad_samples: bool = False) -> None:
        self.skip_bad_samples = skip_bad_samples
        # One slot per process (main = 0, DataLoader worker i = 1 + i), so increments never race; shared memory
        # travels to workers under fork and spawn alike, where a multiprocessing.Value is tied to one context.
        self._skips = torch.zeros(SKIP_COUNTER_SLOTS, dtype=torch.int64).share_memory_()
        self._warned: set[int] = set()
        self._seeded_pid: int | None = None

    @property
    def skippable_errors(self) -> tuple[type[Exception], ...]:
        """The errors that are skipped and counted: `bad_sample_errors` with `skip_bad_samples`, else none."""
        return self.bad_sample_errors if self.skip_bad_samples else ()

    @property
    def skipped_images(self) -> int:
        """How many times a bad sample was replaced by the next good one (all processes, every event)."""
        return int(self._skips.sum())

    def _count_skip(self) -> None:
        worker = get_worker_info()
        self._skips[0 if worker is None else 1 + worker.id % (SKIP_COUNTER_SLOTS - 1)] += 1

    def __len__(self) -> int:
        raise NotImplementedError

    def _load_item(self, index: int) -> Any:
        raise NotImplementedError

    def _seed_augmentation(self, seed: int) -> None:
        transform = getattr(self, "transform", None)
        if hasattr(transform, "set_random_seed"):
            transform.set_random_seed(seed)

    def __getitem__(self, key: int | tuple[int, int]) -> Any:
        """`key`: an index, or (index, augmentation seed) from the training sampler (tasks/common/resume.py), which
        makes the sample's augmentation independent of the worker that draws it. With plain indices each process
        seeds its augmentation once (forked workers would otherwise share identical generators)."""
        if isinstance(key, tuple):
            index, seed = key
            self._seed_augmentation(seed)
        else:
            index = key
            if self._seeded_pid != os.getpid():
                self._seeded_pid = os.getpid()
                self._seed_augmentation(torch.initial_seed() % 2**32)
        size = len(self)
        for attempt in range(size):
            current = (index + attempt) % size
            try:
                return self._load_item(current)
            except self.skippable_errors as error:
                self._count_skip()
                if current not in self._warned:
                    self._warned.add(current)
                    logger.warning("skipping %s (%s); using the next good one instead", self.skip_description, error)
        raise RuntimeError(f"{type(self).__name__}: none of its {size} samples can be read")


class PredictImages(SkippingDataset):
    """The images of a folder (or an explicit file list) for predict: items are (image, meta).

    `meta` holds `path` (str), `orig_size` int64 [2] = (H, W) and `scale` float32 [2] = (sx, sy) mapping input
    pixels back to the original image, as produced by `transform` (a `transforms.EvalTransform`). Unreadable
    images follow the bad-sample policy (`skip_bad_samples`).
    """

    def __init__(
        self, files: str | Path | Sequence[str | Path], transform: Any, skip_bad_samples: bool = False
    ) -> None:
        super().__init__(skip_bad_samples)
        self.files = list_image_files(files) if isinstance(files, str | Path) else [Path(f) for f in files]
        if not self.files:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {files}")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def _load_item(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        path = self.files[index]
        image = load_rgb(path)
        tensor, _, _, scale = self.transform(image)
        height, width = image.shape[:2]
        meta = {"path": str(path), "orig_size": torch.tensor([height, width], dtype=torch.int64), "scale": scale}
        return tensor, meta
