"""A synthetic shapes detection dataset in real COCO format, generated once, deterministically, then cached.

Four classes (circle, square, triangle, cross), 1-4 objects per image, mostly 12-50 % of the image side with a
few small ones, colours far from the background's, backgrounds solid / gradient / noise. Later shapes may cover
earlier ones; a placement that would leave any object less than 30 % visible is redrawn elsewhere (or the new
shape is left out), so every annotated object stays recognisable. Boxes are the tight boxes of the drawn shapes.
It is easy enough that a small SSDLite learns it on a CPU in a few epochs, hard enough to show a bug.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from tasks.common.synthetic import (
    SHAPE_NAMES,
    check_generator_sizes,
    contrasting_colour,
    ensure_generated,
    place_shapes,
)

# Written last: a dataset folder holding it is complete.
COMPLETE_MARKER = "annotations/instances_val.json"
# Bump when the drawing changes, so that caches of the old content are not reused.
GENERATOR_VERSION = 2


def synthetic_dataset_name(num_train: int, num_val: int, image_size: int, seed: int) -> str:
    """The cache folder's name: every parameter that changes the content is in it."""
    return f"synthetic-detection-v{GENERATOR_VERSION}-train{num_train}-val{num_val}-size{image_size}-seed{seed}"


def ensure_synthetic_detection(
    cache_dir: str | Path | None, num_train: int, num_val: int, image_size: int, seed: int = 0
) -> Path:
    """Return the dataset folder, generating it first if absent (COCO layout: annotations/, train/, val/), atomically
    (see `ensure_generated`)."""
    check_generator_sizes("synthetic detection", num_train, num_val, image_size)
    name = synthetic_dataset_name(num_train, num_val, image_size, seed)
    write_split = functools.partial(_write_split, image_size=image_size, seed=seed)
    return ensure_generated(cache_dir, name, COMPLETE_MARKER, {"train": num_train, "val": num_val}, write_split)


def _write_split(
    root: Path, split: str, split_index: int, num_images: int, progress: tqdm, image_size: int, seed: int
) -> None:
    """Draw one split's images and write its COCO annotation file (sorted keys, so the bytes are reproducible)."""
    (root / split).mkdir(parents=True)
    (root / "annotations").mkdir(exist_ok=True)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for index in range(num_images):
        rng = np.random.default_rng([seed, split_index, index])
        picture, objects = draw_scene(rng, image_size)
        image_id = index + 1
        file_name = f"{image_id:06d}.jpg"
        Image.fromarray(picture).save(root / split / file_name, quality=92)
        images.append({"id": image_id, "file_name": file_name, "width": image_size, "height": image_size})
        for label, (x1, y1, x2, y2), area in objects:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": label,
                    "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                    "area": float(area),
                    "iscrowd": 0,
                }
            )
        progress.update(1)
    categories = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(SHAPE_NAMES)]
    document = {
        "info": {"description": f"synthetic shapes ({split})", "version": str(GENERATOR_VERSION)},
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(document, sort_keys=True))


def draw_scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, list[tuple[int, tuple[int, ...], int]]]:
    """One image [size, size, 3] uint8 and its objects as (category id 1..4, x1 y1 x2 y2 box, visible area)."""
    picture, owner, kinds, masks = place_shapes(rng, size, _object_side, _colour)
    objects = []
    for index, (kind, mask) in enumerate(zip(kinds, masks, strict=True)):
        # The box is the whole drawn shape's, also where later shapes cover part of it.
        ys, xs = np.nonzero(mask)
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        objects.append((kind + 1, box, int((owner == index).sum())))
    return picture, objects


def _colour(rng: np.random.Generator, kind: int, background_mean: np.ndarray) -> tuple[int, int, int]:
    """Any colour far from the background's: the class is the shape alone."""
    return contrasting_colour(rng, background_mean)


def _object_side(rng: np.random.Generator, size: int) -> int:
    """Shape extent: 90 % medium/large (12-50 % of the image side), 10 % small (6-12 %)."""
    fraction = rng.uniform(0.12, 0.5) if rng.random() < 0.9 else rng.uniform(0.06, 0.12)
    return max(6, int(round(fraction * size)))
