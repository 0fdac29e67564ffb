"""Drawing helpers of the predict writers: box colours by label, the VOC palette mask and its overlay."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageColor

from tasks.common.drawing import BOX_COLOURS, draw_boxes, overlay_mask, palette_mask, voc_palette


def test_boxes_are_drawn_in_their_labels_colour() -> None:
    pixels = torch.zeros(3, 40, 40, dtype=torch.uint8)
    boxes = torch.tensor([[2.0, 2.0, 20.0, 20.0], [22.0, 22.0, 38.0, 38.0]])
    drawn = draw_boxes(pixels, boxes, [1, 1 + len(BOX_COLOURS)], ["a", "b"], width=1)
    colour = torch.tensor(ImageColor.getrgb(BOX_COLOURS[1]), dtype=torch.uint8)
    assert torch.equal(drawn[:, 10, 2], colour) and torch.equal(drawn[:, 30, 38], colour)  # label % len
    assert torch.equal(drawn[:, 11, 11], torch.zeros(3, dtype=torch.uint8))  # inside stays as it was


def test_palette_mask_and_overlay() -> None:
    mask = np.zeros((4, 6), dtype=np.int64)
    mask[1:3, 2:5] = 1
    image = palette_mask(mask)
    assert image.mode == "P" and image.getpalette() == voc_palette() and np.array_equal(np.asarray(image), mask)
    rgb = Image.new("RGB", (6, 4), (0, 0, 200))
    overlay = np.asarray(overlay_mask(rgb, mask, alpha=0.5))
    assert (overlay[mask == 0] == (0, 0, 200)).all()  # background untouched
    assert (overlay[mask == 1] == (64, 0, 100)).all()  # half-way to VOC label 1, (128, 0, 0)
