"""Boxes drawn with torchvision for the predict writers, in their label's colour (the palette mask and overlay are
`deploy.run.drawing`'s: tests/deploy/test_run_drawing.py)."""

from __future__ import annotations

import torch
from PIL import ImageColor

from deploy.run.drawing import BOX_COLOURS
from tasks.common.drawing import draw_boxes


def test_boxes_are_drawn_in_their_labels_colour() -> None:
    pixels = torch.zeros(3, 40, 40, dtype=torch.uint8)
    boxes = torch.tensor([[2.0, 2.0, 20.0, 20.0], [22.0, 22.0, 38.0, 38.0]])
    drawn = draw_boxes(pixels, boxes, [1, 1 + len(BOX_COLOURS)], ["a", "b"], width=1)
    colour = torch.tensor(ImageColor.getrgb(BOX_COLOURS[1]), dtype=torch.uint8)
    assert torch.equal(drawn[:, 10, 2], colour) and torch.equal(drawn[:, 30, 38], colour)  # label % len
    assert torch.equal(drawn[:, 11, 11], torch.zeros(3, dtype=torch.uint8))  # inside stays as it was
