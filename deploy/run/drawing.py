"""Results drawn on images with Pillow: boxes with captions as `torchvision.utils.draw_bounding_boxes` draws them
(outline BOX_WIDTH pixels, caption in the box colour at the box's top left, Pillow's default font), masks in the VOC
colours, a classification's caption.

The colours, palette, overlay, captions and draw threshold live here, torch-free; the tasks' predictors and writers
use them, and draw boxes with torchvision from the same colours (`tasks.common.drawing.draw_boxes`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

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
BOX_WIDTH = 2
OVERLAY_ALPHA = 0.5  # weight of the class colours in a drawn overlay
DRAW_SCORE_THRESHOLD = 0.3  # detections drawn on images and videos score at least this


def caption(name: str, score: float) -> str:
    """A drawn result's caption: its class name and score."""
    return f"{name} {score:.2f}"


def draw_boxes(image: np.ndarray, boxes: np.ndarray, labels: Sequence[int], captions: Sequence[str]) -> np.ndarray:
    """uint8 RGB [H, W, 3] with `boxes` (x1, y1, x2, y2) drawn in their label's colour and captioned."""
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    margin = BOX_WIDTH + 1
    for box, label, caption in zip(boxes.astype(np.int64).tolist(), labels, captions, strict=True):
        colour = BOX_COLOURS[int(label) % len(BOX_COLOURS)]
        draw.rectangle(box, width=BOX_WIDTH, outline=colour)
        draw.text((box[0] + margin, box[1] + margin), caption, fill=colour, font=font)
    return np.asarray(canvas)


def draw_detections(
    image: np.ndarray, result: dict[str, Any], class_names: Sequence[str], score_threshold: float
) -> tuple[np.ndarray, int]:
    """uint8 RGB [H, W, 3] with the detections scoring >= `score_threshold` drawn and captioned; and how many."""
    shown = result["scores"] >= score_threshold
    if not shown.any():
        return image, 0
    labels, scores = result["labels"][shown].tolist(), result["scores"][shown].tolist()
    captions = [caption(class_names[label], score) for label, score in zip(labels, scores, strict=True)]
    return draw_boxes(image, result["boxes"][shown], labels, captions), int(shown.sum())


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


def palette_mask(mask: np.ndarray) -> Image.Image:
    """A label mask [H, W] as a palette ("P") image in the VOC colours."""
    image = Image.fromarray(np.asarray(mask, dtype=np.uint8), mode="P")
    image.putpalette(voc_palette())
    return image


def overlay_mask(image: np.ndarray, mask: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """uint8 RGB [H, W, 3] blended with the VOC colours of `mask` (weight `alpha`), background (label 0) left as is."""
    rgb = Image.fromarray(image)
    overlay = Image.blend(rgb, palette_mask(mask).convert("RGB"), alpha)
    overlay.paste(rgb, mask=Image.fromarray((np.asarray(mask) == 0).astype(np.uint8) * 255))
    return np.asarray(overlay)


def draw_caption(image: np.ndarray, text: str) -> np.ndarray:
    """uint8 RGB [H, W, 3] with `text` written at its top left, white on a black band (font scaled to the image)."""
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=max(10, canvas.height // 20))
    _, _, right, bottom = draw.textbbox((4, 2), text, font=font)
    draw.rectangle((0, 0, right + 4, bottom + 4), fill=(0, 0, 0))
    draw.text((4, 2), text, fill=(255, 255, 255), font=font)
    return np.asarray(canvas)
