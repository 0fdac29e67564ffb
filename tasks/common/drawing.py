"""Boxes drawn with torchvision for the predict writers, the predictors and validation plots, in the colours of
`deploy.run.drawing`, which holds the torch-free drawing (the VOC colour map, palette masks, overlays, captions)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.utils import draw_bounding_boxes

from deploy.run.drawing import BOX_COLOURS, BOX_WIDTH


def draw_boxes(
    pixels: torch.Tensor, boxes: torch.Tensor, labels: Sequence[int], captions: Sequence[str], width: int = BOX_WIDTH
) -> torch.Tensor:
    """`pixels` uint8 [3, H, W] with `boxes` (x1, y1, x2, y2) drawn in their label's BOX_COLOURS and captioned."""
    colours = [BOX_COLOURS[int(label) % len(BOX_COLOURS)] for label in labels]
    return draw_bounding_boxes(pixels, boxes, labels=list(captions), colors=colours, width=width)
