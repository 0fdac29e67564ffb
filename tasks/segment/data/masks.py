"""What the segmentation datasets share: mask reading and checks, the dataset base, predict folders.

Items: `(image float32 [3, H, W], mask int64 [H, W])` as made by the transform; mask values are class labels
0..num_classes-1 (0 = background) or IGNORE_INDEX (255: object borders, void, padding, COCO overlaps).

Bad samples (a missing or unreadable image, a missing or unreadable mask, a mask whose size differs from its
image, mask labels outside 0..num_classes-1 other than 255) follow the bad-sample policy of every task
(tasks/common/images.py): an error naming the file(s) by default; with `skip_bad_samples=True` each is logged with
its file name, counted in `skipped_images` (across DataLoader workers; every event counts) and replaced by the
next good item, so the number of items never changes but the caller must report the count: an evaluation with
skips is computed partly on substitute items.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from deploy.run.drawing import palette_mask
from tasks.common.images import BAD_SAMPLE_ERRORS as SHARED_BAD_SAMPLE_ERRORS
from tasks.common.images import PredictImages, SkippingDataset, UnreadableImageError, load_rgb
from tasks.segment.data.transforms import IGNORE_INDEX

logger = logging.getLogger(__name__)

# PIL modes whose pixel values are class indices (palette, 8-bit grey, 32-bit and 16-bit integer).
MASK_MODES: tuple[str, ...] = ("P", "L", "I", "I;16", "I;16B", "I;16L")

# torchvision references/segmentation/coco_utils.py: COCO category ids of the 20 VOC classes in VOC label order
# (0 = background, then aeroplane=5 (airplane), bicycle=2, ... tvmonitor=72 (tv)).
COCO_VOC_CATEGORY_IDS: tuple[int, ...] = (0, 5, 2, 16, 9, 44, 6, 3, 17, 62, 21, 67, 18, 19, 4, 1, 64, 20, 63, 7, 72)


class MissingMaskError(FileNotFoundError):
    """A mask file listed for an image does not exist."""


class InvalidMaskError(ValueError):
    """A mask that does not fit its image or holds labels outside the classes."""


# What `skip_bad_samples=True` skips in segmentation: the shared bad samples and wrong or missing masks.
BAD_SAMPLE_ERRORS: tuple[type[Exception], ...] = (*SHARED_BAD_SAMPLE_ERRORS, MissingMaskError, InvalidMaskError)


def save_palette_mask(path: str | Path, mask: np.ndarray) -> None:
    """Write a uint8 label mask [H, W] as a VOC-style palette PNG (mode "P", the VOC colours)."""
    palette_mask(mask).save(path)


def load_mask(path: str | Path) -> np.ndarray:
    """The class indices of a mask image (palette or grayscale PNG; palette indices, not colours) as [H, W]."""
    path = Path(path)
    if not path.is_file():
        raise MissingMaskError(f"mask {path} not found")
    try:
        with Image.open(path) as opened:
            if opened.mode not in MASK_MODES:
                raise InvalidMaskError(
                    f"mask {path} has PIL mode {opened.mode!r}; a mask holds class indices: a palette ('P') or "
                    f"grayscale ('L') PNG (valid modes: {list(MASK_MODES)}), not colours"
                )
            return np.array(opened)
    except (OSError, UnidentifiedImageError, SyntaxError) as error:
        raise UnreadableImageError(f"cannot read mask {path}: {error}") from error


def check_mask(
    mask: np.ndarray, image_shape: Sequence[int], num_classes: int, mask_source: str | Path, image_path: str | Path
) -> np.ndarray:
    """Return `mask` as uint8 after checking its size against the image and its labels against the classes."""
    if tuple(mask.shape[:2]) != tuple(image_shape[:2]):
        raise InvalidMaskError(
            f"mask {mask_source} is {mask.shape[1]}x{mask.shape[0]} (WxH) but its image {image_path} is "
            f"{image_shape[1]}x{image_shape[0]}; a mask must match its image pixel for pixel"
        )
    bad = mask[((mask < 0) | (mask >= num_classes)) & (mask != IGNORE_INDEX)]
    if bad.size:
        values = np.unique(bad)
        shown = ", ".join(str(v) for v in values[:10]) + (", ..." if len(values) > 10 else "")
        raise InvalidMaskError(
            f"mask {mask_source} has labels [{shown}] outside 0..{num_classes - 1} (valid: the {num_classes} "
            f"class labels and {IGNORE_INDEX} = ignore); its image: {image_path}"
        )
    return mask.astype(np.uint8)


class SegmentationDataset(SkippingDataset):
    """Base: subclasses implement `__len__` and `_read(index) -> (uint8 RGB image, checked uint8 mask)`."""

    bad_sample_errors = BAD_SAMPLE_ERRORS

    def __init__(self, class_names: Sequence[str], transform: Any, skip_bad_samples: bool) -> None:
        super().__init__(skip_bad_samples)
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self.transform = transform

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _load_item(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self._read(index)
        return self.transform(image, mask)


# -- predict -------------------------------------------------------------------------------------------------------
class SegmentationPredictImages(PredictImages):
    """The images of a folder (or a file list) at their original size: items are (image, {"path", "orig_size"}).

    `orig_size` is (H, W). Unreadable images raise, or with `skip_bad_samples` are skipped and counted.
    """

    def _load_item(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        path = self.files[index]
        image = load_rgb(path)
        tensor, _ = self.transform(image)
        return tensor, {"path": str(path), "orig_size": (int(image.shape[0]), int(image.shape[1]))}
