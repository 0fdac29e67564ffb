"""Synthetic shapes for semantic segmentation, in the real Pascal VOC layout, generated once and cached.

Scenes as the detection generator's (tasks/data/synthetic.py, whose backgrounds and placement rule are reused):
backgrounds solid / gradient / noise; 1-4 shapes (circle, square, triangle, cross); later shapes cover earlier
ones but leave each at least 30 % visible. Two differences make it learnable by a from-scratch LR-ASPP within a
few CPU epochs (with detection's class-free colours and sizes it reached only mIoU ~0.25 after 6 epochs):
shapes are larger (90 % span 20-55 % of the image side, the rest 10-20 %), and each class has its own hue band
(4 hues 90 degrees apart, +-20 degrees, random saturation and value, always far from the background's colour),
so colour is a strong cue and shape a second one. The mask labels every pixel with its top-most shape's class
(0 = background) and marks a 2 px band along every object boundary (one pixel each side, also between touching
objects) with 255, as VOC marks its object borders. Files: JPEGImages/*.jpg, SegmentationClass/*.png (palette
PNGs, VOC colours), ImageSets/Segmentation/{train,val}.txt: the VOC reader is the code that runs.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from tasks.common.categories import BACKGROUND
from tasks.common.images import build_folder_atomically
from tasks.common.synthetic import (
    HUE_JITTER,
    MIN_COLOUR_DISTANCE,
    MIN_VISIBLE_FRACTION,
    PLACEMENT_TRIES,
    SATURATION_RANGE,
    SHAPE_NAMES,
    SPLITS,
    VALUE_RANGE,
    _background,
    default_cache_dir,
    shape_mask,
)
from tasks.segment.data.masks import save_palette_mask
from tasks.segment.data.transforms import IGNORE_INDEX

SEGMENTATION_CLASS_NAMES: tuple[str, ...] = (BACKGROUND, *SHAPE_NAMES)
# Bump when the drawing changes, so that caches of the old content are not reused.
GENERATOR_VERSION = 2
# Window of the boundary test: a pixel is border when its 3x3 neighbourhood holds two owners -> a 2 px band.
BORDER_WINDOW = 3
# Object extent as a fraction of the image side: LARGE_FRACTION of the objects are medium/large, the rest small.
SIDE_RANGE: tuple[float, float] = (0.2, 0.55)
SMALL_SIDE_RANGE: tuple[float, float] = (0.1, 0.2)
LARGE_FRACTION = 0.9
# Hue band of each class (degrees, OpenCV HSV): centre +- HUE_JITTER; saturation and value in these 0-255 ranges.
CLASS_HUES: tuple[float, ...] = (0.0, 90.0, 180.0, 270.0)


def synthetic_segmentation_name(num_train: int, num_val: int, image_size: int, seed: int) -> str:
    """The cache folder's name: every parameter that changes the content is in it."""
    return f"synthetic-segmentation-v{GENERATOR_VERSION}-train{num_train}-val{num_val}-size{image_size}-seed{seed}"


def ensure_synthetic_segmentation(
    cache_dir: str | Path | None, num_train: int, num_val: int, image_size: int, seed: int = 0
) -> Path:
    """Return the dataset's VOC year folder, generating it first if absent (atomically: temp folder, rename).

    `cache_dir` None means $MOBILENET_SUITE_CACHE or ~/.cache/mobilenet-suite, as for synthetic detection.
    """
    for name, value in (("num_train", num_train), ("num_val", num_val), ("image_size", image_size)):
        if value < 1:
            raise ValueError(f"synthetic segmentation: {name} must be >= 1, got {value}")
    if image_size < 32:
        raise ValueError(f"synthetic segmentation: image_size must be >= 32 pixels, got {image_size}")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = cache / synthetic_segmentation_name(num_train, num_val, image_size, seed)
    if (final / "ImageSets" / "Segmentation" / "val.txt").is_file():
        return final
    counts = {"train": num_train, "val": num_val}

    def write(staging: Path) -> None:
        for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
            (staging / folder).mkdir(parents=True)
        total = num_train + num_val
        with tqdm(total=total, desc=f"generating {final.name}", disable=total < 200, mininterval=2.0) as progress:
            for split_index, split in enumerate(SPLITS):
                _write_split(staging, split, counts[split], image_size, seed, split_index, progress)

    return build_folder_atomically(final, write)


def _write_split(
    root: Path, split: str, num_images: int, image_size: int, seed: int, split_index: int, progress: tqdm
) -> None:
    """Draw one split's images and masks, then write its list file (last, so its presence means complete)."""
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
    background = _background(rng, size)
    background_mean = background.reshape(-1, 3).mean(axis=0)
    canvas = Image.fromarray(background)
    owner = np.full((size, size), -1, dtype=np.int16)  # index of the top-most object at each pixel
    sizes: list[int] = []
    labels: list[int] = []
    for _ in range(int(rng.integers(1, 5))):
        kind = int(rng.integers(len(SHAPE_NAMES)))
        for _ in range(PLACEMENT_TRIES):
            mask_image = shape_mask(rng, kind, size, _object_side(rng, size))
            shape = np.asarray(mask_image, dtype=bool)
            if shape.sum() < 16:
                continue
            trial = owner.copy()
            trial[shape] = len(sizes)
            visible = np.bincount(trial[trial >= 0].ravel(), minlength=len(sizes) + 1)
            if all(visible[i] >= MIN_VISIBLE_FRACTION * area for i, area in enumerate(sizes)):
                break
        else:
            continue  # no placement kept the earlier objects visible enough: leave this shape out
        canvas.paste(_class_colour(rng, kind, background_mean), mask=mask_image)
        owner = trial
        sizes.append(int(shape.sum()))
        labels.append(kind + 1)
    lookup = np.array([0, *labels], dtype=np.uint8)  # owner -1 (background) -> 0, object i -> its label
    mask = lookup[owner + 1]
    mask[object_borders(owner, BORDER_WINDOW)] = IGNORE_INDEX
    return np.asarray(canvas), mask


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
    """A colour in the class's hue band, MIN_COLOUR_DISTANCE or more from the background mean (else the best of 32)."""
    best, best_distance = (0, 0, 0), -1.0
    for _ in range(32):
        hue = (CLASS_HUES[kind] + rng.uniform(-HUE_JITTER, HUE_JITTER)) % 360.0
        hsv = np.array([[[hue / 2.0, rng.uniform(*SATURATION_RANGE), rng.uniform(*VALUE_RANGE)]]])
        colour = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float64)
        distance = float(np.linalg.norm(colour - background_mean))
        rgb = (int(colour[0]), int(colour[1]), int(colour[2]))
        if distance >= MIN_COLOUR_DISTANCE:
            return rgb
        if distance > best_distance:
            best, best_distance = rgb, distance
    return best
