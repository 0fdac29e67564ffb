"""Image-classification transforms (albumentations): torchvision's reference training and evaluation presets.

Training (references/classification/presets.py): RandomResizedCrop to R (scale, ratio 3/4-4/3), horizontal flip,
optional colour jitter, optional TrivialAugment-style policy, normalise, random erasing, tensor. Evaluation: the
shorter side resized to int(R / crop_pct) (torchvision's resize = crop / 0.875: 256 for R = 224), centre crop R.
Both resize with `interpolation`: bilinear as torchvision, bicubic as timm's weights were trained and evaluated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, get_args

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2

from deploy.run.contract import INTERPOLATIONS

AugmentPolicy = Literal["none", "trivial"]
AUGMENT_POLICIES: tuple[str, ...] = get_args(AugmentPolicy)
# How resizes sample, by the names weights entries use (torchvision's "bilinear", timm's "bicubic").
Interpolation = Literal["nearest", "bilinear", "bicubic"]
CROP_RATIO: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)

# TrivialAugmentWide's magnitude ranges (torchvision.transforms.TrivialAugmentWide._augmentation_space); each op's
# magnitude is uniform over [0, max] with a random sign, which albumentations draws as uniform over [-max, max].
TRIVIAL_ENHANCE_MAX = 0.99  # brightness / contrast / saturation / sharpness factor 1 +- m
TRIVIAL_SHEAR_MAX_DEGREES = math.degrees(math.atan(0.99))  # torchvision's shear factor 0.99 as an angle (~44.7)
TRIVIAL_TRANSLATE_MAX = 32.0 / 224.0  # 32 px at 224, as a fraction of the side so that it scales with R
TRIVIAL_ROTATE_MAX_DEGREES = 135.0
TRIVIAL_POSTERIZE_BITS: tuple[int, int] = (2, 8)
# torchvision's RandomErasing defaults (area fraction and aspect ratio of the erased rectangle).
ERASING_SCALE: tuple[float, float] = (0.02, 0.33)
ERASING_RATIO: tuple[float, float] = (0.3, 3.3)


def eval_resize_side(resolution: int, crop_pct: float) -> int:
    """Shorter side before the centre crop: int(resolution / crop_pct), e.g. 256 for 224 at 0.875."""
    if not 0.0 < crop_pct <= 1.0:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
    return int(resolution / crop_pct)


def cv2_interpolation(name: str) -> int:
    """OpenCV's flag for an interpolation name; ValueError listing the valid names."""
    if name not in INTERPOLATIONS:
        raise ValueError(f"interpolation {name!r} is not one of {list(INTERPOLATIONS)}")
    return INTERPOLATIONS[name]


def trivial_augment(fill: Sequence[float]) -> A.OneOf:
    """TrivialAugment (Mueller & Hutter 2021): one op per image, uniformly from 14, at a uniform random magnitude.

    Built from albumentations ops with TrivialAugmentWide's ranges. Two deliberate differences: shear is drawn
    uniformly in degrees (torchvision: in tan(angle)), and "sharpness" is a sharpen or a 3x3 blur with equal odds
    (torchvision blends towards a fixed smoothing kernel for factors below 1). Geometric ops fill with `fill`.
    """
    m = TRIVIAL_ENHANCE_MAX
    factor = (1.0 - m, 1.0 + m)
    geometric = {"border_mode": cv2.BORDER_CONSTANT, "fill": tuple(fill), "p": 1.0}
    shear, translate, rotate = TRIVIAL_SHEAR_MAX_DEGREES, TRIVIAL_TRANSLATE_MAX, TRIVIAL_ROTATE_MAX_DEGREES
    ops = [
        A.NoOp(p=1.0),
        # ColorJitter: a scalar 0 pins a factor to exactly 1, a pair is the factor's range.
        A.ColorJitter(brightness=factor, contrast=0.0, saturation=0.0, hue=0.0, p=1.0),
        A.ColorJitter(brightness=0.0, contrast=factor, saturation=0.0, hue=0.0, p=1.0),
        A.ColorJitter(brightness=0.0, contrast=0.0, saturation=factor, hue=0.0, p=1.0),
        A.OneOf([A.Sharpen(alpha=(0.0, m), lightness=(1.0, 1.0), p=1.0), A.Blur(blur_limit=(3, 3), p=1.0)], p=1.0),
        A.Posterize(num_bits=TRIVIAL_POSTERIZE_BITS, p=1.0),
        A.Solarize(threshold_range=(0.0, 1.0), p=1.0),
        A.Equalize(p=1.0),
        A.AutoContrast(p=1.0),
        A.Affine(rotate=(-rotate, rotate), **geometric),
        A.Affine(shear={"x": (-shear, shear), "y": (0.0, 0.0)}, **geometric),
        A.Affine(shear={"x": (0.0, 0.0), "y": (-shear, shear)}, **geometric),
        A.Affine(translate_percent={"x": (-translate, translate), "y": (0.0, 0.0)}, **geometric),
        A.Affine(translate_percent={"x": (0.0, 0.0), "y": (-translate, translate)}, **geometric),
    ]
    return A.OneOf(ops, p=1.0)


class ClassificationTrainTransform:
    """uint8 RGB image [H, W, 3] -> float32 [3, R, R]: random resized crop, flip, jitter/policy, normalise, erase."""

    def __init__(
        self,
        resolution: int,
        scale: tuple[float, float] = (0.08, 1.0),
        hflip: float = 0.5,
        color_jitter: float = 0.0,
        augment_policy: AugmentPolicy = "none",
        random_erasing: float = 0.0,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        interpolation: Interpolation = "bilinear",
    ) -> None:
        check_train_options(resolution, scale, hflip, color_jitter, augment_policy, random_erasing)
        resize = cv2_interpolation(interpolation)
        steps: list[A.BasicTransform | A.BaseCompose] = [
            A.RandomResizedCrop(
                size=(resolution, resolution), scale=tuple(scale), ratio=CROP_RATIO, interpolation=resize, p=1.0
            ),
        ]
        if hflip > 0:
            steps.append(A.HorizontalFlip(p=hflip))
        if color_jitter > 0:
            jitter = color_jitter
            steps.append(A.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter, hue=0.0, p=1.0))
        if augment_policy == "trivial":
            steps.append(trivial_augment(fill=tuple(255.0 * v for v in mean)))
        steps.append(A.Normalize(mean=tuple(mean), std=tuple(std)))
        if random_erasing > 0:
            # After normalising, as torchvision's RandomErasing on the tensor: fill 0 is the mean colour.
            steps.append(A.Erasing(scale=ERASING_SCALE, ratio=ERASING_RATIO, fill=0.0, p=random_erasing))
        steps.append(ToTensorV2())
        self.compose = A.Compose(steps)

    def set_random_seed(self, seed: int) -> None:
        """Seed the augmentation (albumentations keeps its own generator, copied as-is into forked workers)."""
        self.compose.set_random_seed(seed)

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        return self.compose(image=image)["image"].float()


class ClassificationEvalTransform:
    """uint8 RGB image [H, W, 3] -> float32 [3, R, R]: shorter side to int(R / crop_pct), centre crop, normalise."""

    def __init__(
        self,
        resolution: int,
        crop_pct: float = 0.875,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        interpolation: Interpolation = "bilinear",
    ) -> None:
        if resolution < 1:
            raise ValueError(f"resolution must be >= 1 pixel, got {resolution}")
        side = eval_resize_side(resolution, crop_pct)
        self.compose = A.Compose(
            [
                A.SmallestMaxSize(max_size=side, interpolation=cv2_interpolation(interpolation), p=1.0),
                A.CenterCrop(resolution, resolution, p=1.0),
                A.Normalize(mean=tuple(mean), std=tuple(std)),
                ToTensorV2(),
            ]
        )

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        return self.compose(image=image)["image"].float()


def check_train_options(
    resolution: int,
    scale: Sequence[float],
    hflip: float,
    color_jitter: float,
    augment_policy: str,
    random_erasing: float,
) -> None:
    """Errors naming the argument and its valid range, raised when the data module is built, not at setup."""
    if resolution < 1:
        raise ValueError(f"resolution must be >= 1 pixel, got {resolution}")
    if len(scale) != 2 or not 0.0 < scale[0] <= scale[1] <= 1.0:
        raise ValueError(f"scale must be (low, high) with 0 < low <= high <= 1, got {tuple(scale)}")
    for name, value in (("hflip", hflip), ("random_erasing", random_erasing)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} is a probability in [0, 1], got {value}")
    if color_jitter < 0:
        raise ValueError(f"color_jitter must be >= 0 (0 = off), got {color_jitter}")
    if augment_policy not in AUGMENT_POLICIES:
        raise ValueError(f"augment_policy={augment_policy!r} is not supported; valid: {list(AUGMENT_POLICIES)}")
