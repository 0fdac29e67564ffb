"""What the synthetic generators share: shapes, backgrounds, colour limits and the cache folder."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

logger = logging.getLogger(__name__)

SHAPE_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
SPLITS: tuple[str, ...] = ("train", "val")
CACHE_ENV = "MOBILENET_SUITE_CACHE"

MIN_VISIBLE_FRACTION = 0.3
PLACEMENT_TRIES = 20
MIN_COLOUR_DISTANCE = 110.0  # RGB Euclidean distance between a shape's colour and the background's mean


def default_cache_dir() -> Path:
    """`$MOBILENET_SUITE_CACHE`, else ~/.cache/mobilenet-suite."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "mobilenet-suite")


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Solid colour, linear gradient between two colours, or colour noise (per pixel or blotchy)."""
    style = int(rng.integers(3))
    base = rng.integers(0, 256, 3).astype(np.float32)
    if style == 0:
        return np.broadcast_to(base, (size, size, 3)).astype(np.uint8).copy()
    if style == 1:
        other = rng.integers(0, 256, 3).astype(np.float32)
        angle = rng.uniform(0, 2 * np.pi)
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
        ramp = xs * np.cos(angle) + ys * np.sin(angle)
        ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
        return (base + (other - base) * ramp[..., None]).astype(np.uint8)
    cells = int(rng.choice([4, 8, 16, size]))
    noise = rng.normal(0.0, rng.uniform(15, 45), (cells, cells, 3)).astype(np.float32)
    if cells != size:
        noise = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _contrasting_colour(rng: np.random.Generator, background_mean: np.ndarray) -> tuple[int, int, int]:
    """A random colour at least MIN_COLOUR_DISTANCE from the background mean (the farthest of 32 draws otherwise)."""
    best, best_distance = None, -1.0
    for _ in range(32):
        colour = rng.integers(0, 256, 3)
        distance = float(np.linalg.norm(colour - background_mean))
        if distance >= MIN_COLOUR_DISTANCE:
            return int(colour[0]), int(colour[1]), int(colour[2])
        if distance > best_distance:
            best, best_distance = colour, distance
    return int(best[0]), int(best[1]), int(best[2])



def shape_mask(rng: np.random.Generator, kind: int, size: int, side: int) -> Image.Image:
    """A binary "L" mask of one shape of `kind` and `side` at a random place (it may run off the border by 1/4)."""
    width = side
    height = side if kind in (0, 1) else int(round(side * rng.uniform(0.8, 1.25)))
    x1 = int(rng.integers(-width // 4, size - width + width // 4 + 1))
    y1 = int(rng.integers(-height // 4, size - height + height // 4 + 1))
    x2, y2 = x1 + width - 1, y1 + height - 1
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    if kind == 0:
        draw.ellipse((x1, y1, x2, y2), fill=255)
    elif kind == 1:
        draw.rectangle((x1, y1, x2, y2), fill=255)
    elif kind == 2:
        if rng.random() < 0.5:
            points = [((x1 + x2) / 2, y1), (x2, y2), (x1, y2)]
        else:
            points = [(x1, y1), (x2, y1), ((x1 + x2) / 2, y2)]
        draw.polygon(points, fill=255)
    else:
        thickness_x = max(2, int(width * rng.uniform(0.25, 0.4)))
        thickness_y = max(2, int(height * rng.uniform(0.25, 0.4)))
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        draw.rectangle((cx - thickness_x / 2, y1, cx + thickness_x / 2, y2), fill=255)
        draw.rectangle((x1, cy - thickness_y / 2, x2, cy + thickness_y / 2), fill=255)
    return mask

# colours of the segmentation and classification generators: saturated hues, jittered per object
HUE_JITTER = 20.0
SATURATION_RANGE: tuple[float, float] = (170.0, 255.0)
VALUE_RANGE: tuple[float, float] = (120.0, 255.0)
