"""A synthetic shapes detection dataset in real COCO format, generated once, deterministically, then cached.

Four classes (circle, square, triangle, cross), 1-4 objects per image, mostly 12-50 % of the image side with a
few small ones, colours far from the background's, backgrounds solid / gradient / noise. Later shapes may cover
earlier ones; a placement that would leave any object less than 30 % visible is redrawn elsewhere (or the new
shape is left out), so every annotated object stays recognisable. Boxes are the tight boxes of the drawn shapes.
It is easy enough that a small SSDLite learns it on a CPU in a few epochs, hard enough to show a bug.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from tasks.common.synthetic import (
    MIN_VISIBLE_FRACTION,
    PLACEMENT_TRIES,
    SHAPE_NAMES,
    SPLITS,
    _background,
    _contrasting_colour,
    default_cache_dir,
    shape_mask,
)

logger = logging.getLogger(__name__)
# Bump when the drawing changes, so that caches of the old content are not reused.
GENERATOR_VERSION = 2


def synthetic_dataset_name(num_train: int, num_val: int, image_size: int, seed: int) -> str:
    """The cache folder's name: every parameter that changes the content is in it."""
    return f"synthetic-detection-v{GENERATOR_VERSION}-train{num_train}-val{num_val}-size{image_size}-seed{seed}"


def ensure_synthetic_detection(
    cache_dir: str | Path | None, num_train: int, num_val: int, image_size: int, seed: int = 0
) -> Path:
    """Return the dataset folder, generating it first if absent (COCO layout: annotations/, train/, val/).

    Generation writes into a hidden temporary sibling folder and renames it into place, so an interrupted run
    never leaves a partial dataset under the final name; concurrent generators (e.g. DDP ranks) are safe: the
    first rename wins and the others discard their copy.
    """
    for name, value in (("num_train", num_train), ("num_val", num_val), ("image_size", image_size)):
        if value < 1:
            raise ValueError(f"synthetic detection: {name} must be >= 1, got {value}")
    if image_size < 32:
        raise ValueError(f"synthetic detection: image_size must be >= 32 pixels, got {image_size}")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = cache / synthetic_dataset_name(num_train, num_val, image_size, seed)
    if (final / "annotations" / "instances_val.json").is_file():
        return final
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=cache))
    try:
        counts = {"train": num_train, "val": num_val}
        progress = tqdm(
            total=num_train + num_val,
            desc=f"generating {final.name}",
            disable=num_train + num_val < 200,
            mininterval=2.0,
        )
        with progress:
            for split_index, split in enumerate(SPLITS):
                _write_split(staging, split, counts[split], image_size, seed, split_index, progress)
        try:
            staging.rename(final)
        except OSError:
            if not final.is_dir():
                raise
            logger.info("synthetic dataset %s was generated concurrently; using that copy", final)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return final


def _write_split(
    root: Path, split: str, num_images: int, image_size: int, seed: int, split_index: int, progress: tqdm
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
    background = _background(rng, size)
    background_mean = background.reshape(-1, 3).mean(axis=0)
    canvas = Image.fromarray(background)
    owner = np.full((size, size), -1, dtype=np.int16)  # index of the top-most object at each pixel
    masks: list[np.ndarray] = []
    kinds: list[int] = []
    for _ in range(int(rng.integers(1, 5))):
        kind = int(rng.integers(len(SHAPE_NAMES)))
        for _ in range(PLACEMENT_TRIES):
            mask_image = shape_mask(rng, kind, size, _object_side(rng, size))
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
        canvas.paste(_contrasting_colour(rng, background_mean), mask=mask_image)
        owner = trial
        masks.append(mask)
        kinds.append(kind)
    objects = []
    for index, (kind, mask) in enumerate(zip(kinds, masks, strict=True)):
        # The box is the whole drawn shape's, also where later shapes cover part of it.
        ys, xs = np.nonzero(mask)
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        objects.append((kind + 1, box, int((owner == index).sum())))
    return np.asarray(canvas), objects


def _object_side(rng: np.random.Generator, size: int) -> int:
    """Shape extent: 90 % medium/large (12-50 % of the image side), 10 % small (6-12 %)."""
    fraction = rng.uniform(0.12, 0.5) if rng.random() < 0.9 else rng.uniform(0.06, 0.12)
    return max(6, int(round(fraction * size)))
