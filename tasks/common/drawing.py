"""Drawing helpers shared by the predict writers (and validation plots): the VOC colour map, boxes with captions,
mask overlays."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.utils import draw_bounding_boxes

# Box colours by label (label % len): ten well-separated colours.
BOX_COLOURS: tuple[str, ...] = (
    "#e6194b",
    "#3cb44b",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#42d4f4",
    "#f032e6",
    "#bfef45",
    "#fabed4",
    "#469990",
)


def voc_palette(size: int = 256) -> list[int]:
    """The VOC colour map as a flat PIL palette (3 x `size` values): label 1 = (128, 0, 0), ..., 255 is
    (224, 224, 192)."""
    palette: list[int] = []
    for label in range(size):
        red = green = blue = 0
        bits = label
        for shift in range(7, -1, -1):
            red |= (bits & 1) << shift
            green |= ((bits >> 1) & 1) << shift
            blue |= ((bits >> 2) & 1) << shift
            bits >>= 3
        palette += [red, green, blue]
    return palette


def draw_boxes(
    pixels: torch.Tensor, boxes: torch.Tensor, labels: Sequence[int], captions: Sequence[str], width: int = 2
) -> torch.Tensor:
    """`pixels` uint8 [3, H, W] with `boxes` (x1, y1, x2, y2) drawn in their label's BOX_COLOURS and captioned."""
    colours = [BOX_COLOURS[int(label) % len(BOX_COLOURS)] for label in labels]
    return draw_bounding_boxes(pixels, boxes, labels=list(captions), colors=colours, width=width)


def palette_mask(mask: np.ndarray) -> Image.Image:
    """A label mask [H, W] as a palette ("P") image in the VOC colours."""
    image = Image.fromarray(np.asarray(mask, dtype=np.uint8), mode="P")
    image.putpalette(voc_palette())
    return image


def overlay_mask(rgb: Image.Image, mask: np.ndarray, alpha: float) -> Image.Image:
    """`rgb` blended with the VOC colours of `mask` (weight `alpha`), background (label 0) left as it is."""
    overlay = Image.blend(rgb, palette_mask(mask).convert("RGB"), alpha)
    overlay.paste(rgb, mask=Image.fromarray((np.asarray(mask) == 0).astype(np.uint8) * 255))
    return overlay
