"""Classification's crop arithmetic: the crop fraction (`crop_pct`, timm's name) that a resize-then-centre-crop
preprocessing of named weights stands for."""

from __future__ import annotations

import math

from backbones.weights import WeightsEntry


def fit_crop_pct(image_size: int, resize_size: int) -> float:
    """The crop fraction for which the classification transforms' `int(image_size / crop_pct)` is `resize_size`
    (image_size / resize_size, nudged down where floating point would land one pixel short)."""
    crop_pct = image_size / resize_size
    while int(image_size / crop_pct) < resize_size:
        crop_pct = math.nextafter(crop_pct, 0.0)
    return crop_pct


def weights_crop_pct(entry: WeightsEntry) -> float:
    """The crop fraction of a classifier entry: its resize size (or none: its input size) before its crop."""
    return fit_crop_pct(entry.image_size, entry.resize_size or entry.image_size)
