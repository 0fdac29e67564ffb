"""Synthetic shapes for image classification, in the real ImageNet folder layout, generated once and cached.

8 classes: the 4 shapes of SHAPE_NAMES (circle, square, triangle, cross) x 2 colour families (red: hue 0 +- 20
degrees, blue: hue 220 +- 20, random saturation and value within the band), so colour alone decides the family
and shape decides the rest. One object per image, its extent (bounding box, after rotation) 35-80 % of the image
side, fully inside the image at a random place, non-circles rotated by a random angle. Backgrounds are the
detection generator's (solid / gradient / noise) at 25 % of their saturation (HSV saturation 0.5 at most, the
objects' 0.67-1), so that no background passes for a colour family, and always far in colour from the object.
Classes are balanced: image i of a split is class i mod 8. Files: <split>/<class>/<split>_<index>.jpg for the
splits train and val: the imagefolder reader is the code that runs.

Defaults (DEFAULT_*): 2400 train images (300 a class), 400 val (50 a class), stored at 146 px. Sized for a
from-scratch MobileNetV3-Small at DEFAULT_RESOLUTION (96 px crops: the shapes stay clear, and a step costs about
half of one at 128) to learn in a few CPU minutes; generation takes about 3 s per 1000 images on one CPU core.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from tasks.common.synthetic import (
    SHAPE_NAMES,
    check_generator_sizes,
    ensure_generated,
    hue_band_colour,
    random_background,
)

# Bump when the drawing changes, so that caches of the old content are not reused.
GENERATOR_VERSION = 1
# Colour family -> hue band centre (degrees); the bands (+- HUE_JITTER) are 140 degrees apart at the closest.
COLOUR_FAMILIES: dict[str, float] = {"red": 0.0, "blue": 220.0}
# Class name -> (colour family, shape index in SHAPE_NAMES); class names sorted, as the folder reader orders them.
CLASS_SPECS: dict[str, tuple[str, int]] = dict(
    sorted((f"{family}_{name}", (family, kind)) for family in COLOUR_FAMILIES for kind, name in enumerate(SHAPE_NAMES))
)
CLASSIFICATION_CLASS_NAMES: tuple[str, ...] = tuple(CLASS_SPECS)
# Object extent (bounding box after rotation) as a fraction of the image side.
EXTENT_RANGE: tuple[float, float] = (0.35, 0.8)
# Cross arm thickness as a fraction of the cross's width (as the detection generator's crosses).
CROSS_THICKNESS_RANGE: tuple[float, float] = (0.25, 0.4)
# Backgrounds keep this fraction of their saturation (blended towards their own grey).
BACKGROUND_SATURATION = 0.25
JPEG_QUALITY = 92

DEFAULT_TRAIN_IMAGES = 2400
DEFAULT_VAL_IMAGES = 400
DEFAULT_IMAGE_SIZE = 146
DEFAULT_RESOLUTION = 96  # the classifier's default input side, sized for this data


def synthetic_classification_name(num_train: int, num_val: int, image_size: int, seed: int) -> str:
    """The cache folder's name: every parameter that changes the content is in it."""
    return f"synthetic-classification-v{GENERATOR_VERSION}-train{num_train}-val{num_val}-size{image_size}-seed{seed}"


def ensure_synthetic_classification(
    cache_dir: str | Path | None,
    num_train: int = DEFAULT_TRAIN_IMAGES,
    num_val: int = DEFAULT_VAL_IMAGES,
    image_size: int = DEFAULT_IMAGE_SIZE,
    seed: int = 0,
) -> Path:
    """Return the dataset folder (holding train/ and val/), generating it first if absent (atomically, see
    `ensure_generated`).

    `cache_dir` None means $MOBILENET_SUITE_CACHE or ~/.cache/mobilenet-suite, as for the other synthetic data.
    """
    classes = len(CLASSIFICATION_CLASS_NAMES)
    check_generator_sizes("synthetic classification", num_train, num_val, image_size, classes, "one per class")

    def write_split(root: Path, split: str, split_index: int, num_images: int, progress: tqdm) -> None:
        for index in range(num_images):
            class_name = CLASSIFICATION_CLASS_NAMES[index % classes]
            rng = np.random.default_rng([seed, split_index, index])
            picture = draw_classification_image(rng, class_name, image_size)
            folder = root / split / class_name
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(picture).save(folder / f"{split}_{index:06d}.jpg", quality=JPEG_QUALITY)
            progress.update(1)

    name = synthetic_classification_name(num_train, num_val, image_size, seed)
    # "val" is written last and the folder published only complete (renamed into place after writing)
    return ensure_generated(cache_dir, name, "val", {"train": num_train, "val": num_val}, write_split)


def draw_classification_image(rng: np.random.Generator, class_name: str, size: int) -> np.ndarray:
    """One image uint8 [size, size, 3] showing one object of `class_name` (a key of CLASS_SPECS)."""
    family, kind = CLASS_SPECS[class_name]
    background = _muted_background(rng, size)
    canvas = Image.fromarray(background)
    colour = hue_band_colour(rng, COLOUR_FAMILIES[family], background.reshape(-1, 3).mean(axis=0))
    draw = ImageDraw.Draw(canvas)
    extent = rng.uniform(*EXTENT_RANGE) * size
    if kind == 0:  # circle: no rotation needed
        x1, y1 = (rng.uniform(0, size - extent) for _ in range(2))
        draw.ellipse((x1, y1, x1 + extent - 1, y1 + extent - 1), fill=colour)
    else:
        points = _outline(rng, kind)
        angle = rng.uniform(0, 2 * math.pi)
        rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        points = points @ rotation.T
        points -= points.min(axis=0)
        points *= (extent - 1) / points.max()
        points += rng.uniform(0, size - points.max(axis=0))  # the whole bounding box stays inside the image
        draw.polygon([(float(x), float(y)) for x, y in points], fill=colour)
    return np.asarray(canvas)


def _outline(rng: np.random.Generator, kind: int) -> np.ndarray:
    """Vertices [N, 2] of a square (1), triangle (2) or cross (3) in [-1, 1] units."""
    if kind == 1:
        return np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)], dtype=np.float64)
    if kind == 2:
        return np.array([(0, -1), (1, 1), (-1, 1)], dtype=np.float64)
    t = rng.uniform(*CROSS_THICKNESS_RANGE)  # half the arm width in [-1, 1] units = the arm's width fraction
    return np.array(
        [(-t, -1), (t, -1), (t, -t), (1, -t), (1, t), (t, t), (t, 1), (-t, 1), (-t, t), (-1, t), (-1, -t), (-t, -t)],
        dtype=np.float64,
    )


def _muted_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """The detection generator's background with its saturation cut to BACKGROUND_SATURATION."""
    background = random_background(rng, size).astype(np.float32)
    grey = background.mean(axis=2, keepdims=True)
    return np.clip(grey + BACKGROUND_SATURATION * (background - grey), 0, 255).astype(np.uint8)
