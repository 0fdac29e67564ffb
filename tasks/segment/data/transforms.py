"""Semantic-segmentation transforms (albumentations): torchvision's reference training policy, and evaluation.

Training (references/segmentation/presets.py): random resize of the shorter side to base_size x U(scale_range),
pad up to the crop size (image with the mean, mask with IGNORE_INDEX, so padding never counts in the loss),
random crop, horizontal flip, normalise. Evaluation keeps the image at its original size (the reference resizes
to base_size; we do not, so mIoU is measured against the dataset's own masks) and only normalises.
"""

from __future__ import annotations

from collections.abc import Sequence

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2

# Mask value for "not a class": VOC's object borders and void, padding, COCO overlaps. Losses and metrics skip it.
IGNORE_INDEX = 255


def scaled_sides(base_size: int, scale_range: tuple[float, float]) -> list[int]:
    """Every shorter-side length base_size x s for s in scale_range, in whole pixels (drawn uniformly)."""
    low, high = scale_range
    if not 0 < low <= high:
        raise ValueError(f"scale_range must satisfy 0 < low <= high, got {tuple(scale_range)}")
    if base_size < 1:
        raise ValueError(f"base_size must be >= 1 pixel, got {base_size}")
    return list(range(max(1, round(base_size * low)), max(1, round(base_size * high)) + 1))


def _mask_tensor(mask: torch.Tensor | np.ndarray) -> torch.Tensor:
    """ToTensorV2 keeps the mask's uint8: class labels are int64 for the loss."""
    return torch.as_tensor(mask).long()


class SegmentationTrainTransform:
    """uint8 RGB image [H, W, 3] + uint8 mask [H, W] -> image float32 [3, c, c], mask int64 [c, c] (c = crop_size)."""

    def __init__(
        self,
        crop_size: int,
        base_size: int,
        scale_range: tuple[float, float],
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        if crop_size < 1:
            raise ValueError(f"crop_size must be >= 1 pixel, got {crop_size}")
        fill = tuple(255.0 * m for m in mean)  # the mean colour: 0 after normalising
        self.compose = A.Compose(
            [
                # Shorter side to a random length; the mask is resized with nearest neighbour (labels stay labels).
                A.SmallestMaxSize(max_size=scaled_sides(base_size, scale_range)),
                A.PadIfNeeded(
                    crop_size,
                    crop_size,
                    position="top_left",  # pad bottom/right, as the reference's pad_if_smaller
                    border_mode=cv2.BORDER_CONSTANT,
                    fill=fill,
                    fill_mask=IGNORE_INDEX,
                ),
                A.RandomCrop(crop_size, crop_size),
                A.HorizontalFlip(p=0.5),
                A.Normalize(mean=mean, std=std),
                ToTensorV2(),
            ]
        )

    def set_random_seed(self, seed: int) -> None:
        """Seed the augmentation (albumentations keeps its own generator, copied as-is into forked workers)."""
        self.compose.set_random_seed(seed)

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.compose(image=image, mask=mask)
        return out["image"].float(), _mask_tensor(out["mask"])


class SegmentationEvalTransform:
    """Normalise only: image float32 [3, H, W] and mask int64 [H, W] at the original size (mask optional)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.compose = A.Compose([A.Normalize(mean=mean, std=std), ToTensorV2()])

    def __call__(self, image: np.ndarray, mask: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if mask is None:
            return self.compose(image=image)["image"].float(), None
        out = self.compose(image=image, mask=mask)
        return out["image"].float(), _mask_tensor(out["mask"])
