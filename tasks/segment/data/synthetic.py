"""Synthetic shapes for semantic segmentation, in the real Pascal VOC layout, generated once and cached.

Scenes as the detection generator's (tasks/detect/data/synthetic.py, whose backgrounds and placement rule are reused):
backgrounds solid / gradient / noise; 1-4 shapes (circle, square, triangle, cross); later shapes cover earlier
ones but leave each at least 30 % visible. Two differences make it learnable by a from-scratch LR-ASPP within a
few CPU epochs (detection's class-free colours and sizes are too hard for that):
shapes are larger (90 % span 20-55 % of the image side, the rest 10-20 %), and each class has its own hue band
(4 hues 90 degrees apart, +-20 degrees, random saturation and value, always far from the background's colour),
so colour is a strong cue and shape a second one. The mask labels every pixel with its top-most shape's class
(0 = background) and marks a 2 px band along every object boundary (one pixel each side, also between touching
objects) with 255, as VOC marks its object borders. Files: JPEGImages/*.jpg, SegmentationClass/*.png (palette
PNGs, VOC colours), ImageSets/Segmentation/{train,val}.txt: the VOC reader is the code that runs.
"""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from tasks.common.categories import BACKGROUND
from tasks.common.synthetic import (
    SHAPE_NAMES,
    check_generator_sizes,
    ensure_generated,
    hue_band_colour,
    place_shapes,
)
from tasks.segment.data.masks import save_palette_mask
from tasks.segment.data.transforms import IGNORE_INDEX

SEGMENTATION_CLASS_NAMES: tuple[str, ...] = (BACKGROUND, *SHAPE_NAMES)
# Written last: a dataset folder holding it is complete.
COMPLETE_MARKER = "ImageSets/Segmentation/val.txt"
# Bump when the drawing changes, so that caches of the old content are not reused.
GENERATOR_VERSION = 2
# Window of the boundary test: a pixel is border when its 3x3 neighbourhood holds two owners -> a 2 px band.
BORDER_WINDOW = 3
# Object extent as a fraction of the image side: LARGE_FRACTION of the objects are medium/large, the rest small.
SIDE_RANGE: tuple[float, float] = (0.2, 0.55)
SMALL_SIDE_RANGE: tuple[float, float] = (0.1, 0.2)
LARGE_FRACTION = 0.9
# Hue band centre of each class (degrees); see hue_band_colour.
CLASS_HUES: tuple[float, ...] = (0.0, 90.0, 180.0, 270.0)


def synthetic_segmentation_name(num_train: int, num_val: int, image_size: int, seed: int) -> str:
    """The cache folder's name: every parameter that changes the content is in it."""
    return f"synthetic-segmentation-v{GENERATOR_VERSION}-train{num_train}-val{num_val}-size{image_size}-seed{seed}"


def ensure_synthetic_segmentation(
    cache_dir: str | Path | None, num_train: int, num_val: int, image_size: int, seed: int = 0
) -> Path:
    """Return the dataset's VOC year folder, generating it first if absent (atomically, see `ensure_generated`).

    `cache_dir` None means $MOBILENET_SUITE_CACHE or ~/.cache/mobilenet-suite, as for synthetic detection.
    """
    check_generator_sizes("synthetic segmentation", num_train, num_val, image_size)
    name = synthetic_segmentation_name(num_train, num_val, image_size, seed)
    write_split = functools.partial(_write_split, image_size=image_size, seed=seed)
    return ensure_generated(cache_dir, name, COMPLETE_MARKER, {"train": num_train, "val": num_val}, write_split)


def _write_split(
    root: Path, split: str, split_index: int, num_images: int, progress: tqdm, image_size: int, seed: int
) -> None:
    """Draw one split's images and masks, then write its list file (last, so its presence means complete)."""
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    stems = []
    for index in range(num_images):
        rng = np.random.default_rng([seed, split_index, index])
        picture, mask = draw_segmentation_scene(rng, image_size)
        stem = f"{split}_{index + 1:06d}"
        Image.fromarray(picture).save(root / "JPEGImages" / f"{stem}.jpg", quality=92)
        save_palette_mask(root / "SegmentationClass" / f"{stem}.png", mask)
        stems.append(stem)
        progress.update(1)
    (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("".join(f"{s}\n" for s in stems))


def draw_segmentation_scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One image uint8 [size, size, 3] and its mask uint8 [size, size]: labels 0..4, 255 on object borders."""
    picture, owner, kinds, _ = place_shapes(rng, size, _object_side, _class_colour)
    labels = [kind + 1 for kind in kinds]
    lookup = np.array([0, *labels], dtype=np.uint8)  # owner -1 (background) -> 0, object i -> its label
    mask = lookup[owner + 1]
    mask[object_borders(owner, BORDER_WINDOW)] = IGNORE_INDEX
    return picture, mask


def object_borders(owner: np.ndarray, window: int = BORDER_WINDOW) -> np.ndarray:
    """Pixels whose window x window neighbourhood (inside the image) holds more than one owner."""
    ids = (owner.astype(np.int32) + 1).astype(np.uint8)  # at most a few objects: fits in uint8
    kernel = np.ones((window, window), dtype=np.uint8)
    # cv2's default border value makes the image edge neutral: no band where a shape runs off the image.
    return cv2.dilate(ids, kernel) != cv2.erode(ids, kernel)


def _object_side(rng: np.random.Generator, size: int) -> int:
    """This module's side distribution: larger objects than the detection data's."""
    low, high = SIDE_RANGE if rng.random() < LARGE_FRACTION else SMALL_SIDE_RANGE
    return max(6, int(round(rng.uniform(low, high) * size)))


def _class_colour(rng: np.random.Generator, kind: int, background_mean: np.ndarray) -> tuple[int, int, int]:
    """A colour in the class's hue band, far from the background's."""
    return hue_band_colour(rng, CLASS_HUES[kind], background_mean)
