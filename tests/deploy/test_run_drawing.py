"""`deploy.run.drawing`, which the runner and the tasks' writers and predictors both draw with: the VOC palette mask
and its overlay."""

from __future__ import annotations

import numpy as np

from deploy.run.drawing import overlay_mask, palette_mask, voc_palette


def test_palette_mask_and_overlay() -> None:
    mask = np.zeros((4, 6), dtype=np.int64)
    mask[1:3, 2:5] = 1
    image = palette_mask(mask)
    assert image.mode == "P" and image.getpalette() == voc_palette() and np.array_equal(np.asarray(image), mask)
    rgb = np.zeros((4, 6, 3), dtype=np.uint8)
    rgb[...] = (0, 0, 200)
    overlay = overlay_mask(rgb, mask, alpha=0.5)
    assert overlay.dtype == np.uint8 and overlay.shape == (4, 6, 3)
    assert (overlay[mask == 0] == (0, 0, 200)).all()  # background untouched
    assert (overlay[mask == 1] == (64, 0, 100)).all()  # half-way to VOC label 1, (128, 0, 0)
