"""Semantic-segmentation datasets: Pascal VOC (palette PNG masks), COCO instances as VOC classes, predict folders.

Items: `(image float32 [3, H, W], mask int64 [H, W])` as made by the transform; mask values are class labels
0..num_classes-1 (0 = background) or IGNORE_INDEX (255: object borders, void, padding, COCO overlaps).

Bad samples (a missing or unreadable image, a missing or unreadable mask, a mask whose size differs from its
image, mask labels outside 0..num_classes-1 other than 255) raise an error naming the file(s) by default. With
`skip_bad_samples=True` each is logged with its file name, counted in `skipped_samples` (across DataLoader
workers; every event counts) and replaced by the next good item, so the number of items never changes but the
caller must report the count: an evaluation with skips is computed partly on substitute items.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def voc_palette() -> list[int]:
    """The VOC colour map as a flat PIL palette (768 values): label 1 = (128, 0, 0), ..., 255 = (224, 224, 192)."""
    palette: list[int] = []
    for label in range(256):
        red = green = blue = 0
        bits = label
        for shift in range(7, -1, -1):
            red |= (bits & 1) << shift
            green |= ((bits >> 1) & 1) << shift
            blue |= ((bits >> 2) & 1) << shift
            bits >>= 3
        palette += [red, green, blue]
    return palette
