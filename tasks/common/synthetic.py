"""What the synthetic generators share: shapes, backgrounds, colours and the cache folder."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from tasks.common.images import build_folder_atomically

logger = logging.getLogger(__name__)

SHAPE_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
SPLITS: tuple[str, ...] = ("train", "val")
CACHE_ENV = "MOBILENET_SUITE_CACHE"

MIN_VISIBLE_FRACTION = 0.3
PLACEMENT_TRIES = 20
MIN_COLOUR_DISTANCE = 110.0  # RGB Euclidean distance between a shape's colour and the background's mean
MIN_IMAGE_SIZE = 32  # pixels: the smallest generated image side


def default_cache_dir() -> Path:
    """`$MOBILENET_SUITE_CACHE`, else ~/.cache/mobilenet-suite."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "mobilenet-suite")


def check_generator_sizes(
    dataset: str, num_train: int, num_val: int, image_size: int, min_train: int = 1, why: str = ""
) -> None:
    """Errors naming the generator and the argument: `min_train` training images (`why`: the reason, if any), one
    val image and MIN_IMAGE_SIZE pixels at the least."""
    for name, value, least, reason in (("num_train", num_train, min_train, why), ("num_val", num_val, 1, "")):
        if value < least:
            raise ValueError(f"{dataset}: {name} must be >= {least}{f' ({reason})' if reason else ''}, got {value}")
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"{dataset}: image_size must be >= {MIN_IMAGE_SIZE} pixels, got {image_size}")


# write_split(staging folder, split, split index, number of images, progress bar)
SplitWriter = Callable[[Path, str, int, int, tqdm], None]


def ensure_generated(
    cache_dir: str | Path | None, name: str, complete: str, counts: Mapping[str, int], write_split: SplitWriter
) -> Path:
    """The generated dataset folder `name` in the cache (`cache_dir`; None: `default_cache_dir()`), generated first
    when its `complete` (a path written last) is absent: `write_split` for each of SPLITS with `counts[split]`
    images, under one progress bar, published all at once (`build_folder_atomically`): an interrupted run never
    leaves a partial dataset under the final name, and concurrent generators (e.g. DDP ranks) are safe."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = cache / name
    if (final / complete).exists():
        return final
    total = sum(counts[split] for split in SPLITS)

    def write(staging: Path) -> None:
        with tqdm(total=total, desc=f"generating {name}", disable=total < 200, mininterval=2.0) as progress:
            for split_index, split in enumerate(SPLITS):
                write_split(staging, split, split_index, counts[split], progress)

    return build_folder_atomically(final, write)


def random_background(rng: np.random.Generator, size: int) -> np.ndarray:
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


def contrasting_colour(rng: np.random.Generator, background_mean: np.ndarray) -> tuple[int, int, int]:
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


def hue_band_colour(rng: np.random.Generator, hue_centre: float, background_mean: np.ndarray) -> tuple[int, int, int]:
    """A colour of hue `hue_centre` +- HUE_JITTER degrees (saturation and value drawn in SATURATION_RANGE and
    VALUE_RANGE), MIN_COLOUR_DISTANCE or more from the background mean (else the farthest of 32 draws)."""
    best, best_distance = (0, 0, 0), -1.0
    for _ in range(32):
        hue = (hue_centre + rng.uniform(-HUE_JITTER, HUE_JITTER)) % 360.0
        hsv = np.array([[[hue / 2.0, rng.uniform(*SATURATION_RANGE), rng.uniform(*VALUE_RANGE)]]])
        colour = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float64)
        distance = float(np.linalg.norm(colour - background_mean))
        rgb = (int(colour[0]), int(colour[1]), int(colour[2]))
        if distance >= MIN_COLOUR_DISTANCE:
            return rgb
        if distance > best_distance:
            best, best_distance = rgb, distance
    return best


def place_shapes(
    rng: np.random.Generator,
    size: int,
    object_side: Callable[[np.random.Generator, int], int],
    colour: Callable[[np.random.Generator, int, np.ndarray], tuple[int, int, int]],
) -> tuple[np.ndarray, np.ndarray, list[int], list[np.ndarray]]:
    """A scene of the detection and segmentation generators: a random background and 1-4 shapes of random kinds.

    Later shapes may cover earlier ones; a placement that would leave an earlier shape less than
    MIN_VISIBLE_FRACTION visible is redrawn elsewhere (PLACEMENT_TRIES times, then the new shape is left out).
    `object_side(rng, size)` draws a shape's side, `colour(rng, kind, background mean)` its colour. Returns the
    image uint8 [size, size, 3], `owner` int16 [size, size] (index of the top-most shape at each pixel, -1 for
    none), the shapes' kinds (indices into SHAPE_NAMES) and their whole masks (bool [size, size]).
    """
    background = random_background(rng, size)
    background_mean = background.reshape(-1, 3).mean(axis=0)
    canvas = Image.fromarray(background)
    owner = np.full((size, size), -1, dtype=np.int16)
    masks: list[np.ndarray] = []
    kinds: list[int] = []
    for _ in range(int(rng.integers(1, 5))):
        kind = int(rng.integers(len(SHAPE_NAMES)))
        for _ in range(PLACEMENT_TRIES):
            mask_image = shape_mask(rng, kind, size, object_side(rng, size))
            mask = np.asarray(mask_image, dtype=bool)
            if mask.sum() < 16:
                continue
            trial = owner.copy()
            trial[mask] = len(masks)
            visible = np.bincount(trial[trial >= 0].ravel(), minlength=len(masks) + 1)
            if all(visible[i] >= MIN_VISIBLE_FRACTION * m.sum() for i, m in enumerate(masks)):
                break
        else:
            continue  # no placement kept the earlier objects visible enough: leave this shape out
        canvas.paste(colour(rng, kind, background_mean), mask=mask_image)
        owner = trial
        masks.append(mask)
        kinds.append(kind)
    return np.asarray(canvas), owner, kinds, masks
