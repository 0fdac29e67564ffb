"""Tiny VOC-layout and COCO segmentation datasets written into a folder, for data tests and CLI smoke tests.

Images are non-square (width = image_size, height = 3/4 of it); each object is a filled rectangle in its own
colour on a gray background, with its mask exactly under it, so a model could in principle learn them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from tasks.segment.data.masks import COCO_VOC_CATEGORY_IDS, save_palette_mask
from tasks.segment.data.synthetic import object_borders
from tasks.segment.data.transforms import IGNORE_INDEX

# A COCO category that is not a VOC class (stop sign): its pixels are background in COCO-as-VOC masks.
NON_VOC_CATEGORY_ID = 13


def _rectangles(rng: np.random.Generator, width: int, height: int, count: int) -> list[tuple[int, int, int, int]]:
    """x1, y1, x2, y2 (exclusive) rectangles; the first covers 60-80 % of each side (over 1000 px from 64 px)."""
    boxes = []
    for index in range(count):
        low, high = (0.6, 0.8) if index == 0 else (0.2, 0.45)
        w = int(rng.integers(int(width * low), int(width * high) + 1))
        h = int(rng.integers(int(height * low), int(height * high) + 1))
        x1, y1 = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        boxes.append((x1, y1, x1 + w, y1 + h))
    return boxes


def _paint(
    rng: np.random.Generator, width: int, height: int, boxes: list[tuple[int, int, int, int]], labels: list[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image uint8 [H, W, 3], label mask uint8 [H, W] with the later box on top, owner map int16 [H, W])."""
    image = np.full((height, width, 3), 128, dtype=np.uint8)
    mask = np.zeros((height, width), dtype=np.uint8)
    owner = np.full((height, width), -1, dtype=np.int16)
    for index, ((x1, y1, x2, y2), label) in enumerate(zip(boxes, labels, strict=True)):
        image[y1:y2, x1:x2] = rng.integers(0, 256, 3)
        mask[y1:y2, x1:x2] = label
        owner[y1:y2, x1:x2] = index
    return image, mask, owner


def write_voc_segmentation(root: str | Path, num_images: int = 4, image_size: int = 96, seed: int = 0) -> Path:
    """Write a VOCdevkit folder root/VOC2012/ with segmentation data; return root (a valid `--data.root`).

    VOC2012/: JPEGImages/*.jpg, SegmentationClass/*.png (palette PNGs, 2 px object borders = 255), and
    ImageSets/Segmentation/ lists "train" (even positions), "val" (odd), "trainval" (all). The SBD-style extra
    list "train_aug" holds the train stems, 2 more images ("aug_*", masks only in SegmentationClassAug/ as
    grayscale PNGs) and the first val stem (which the data module must leave out); SegmentationClassAug/ has a
    mask for every stem of "train_aug". Labels are VOC classes 1-5.
    """
    root = Path(root)
    year = root / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClass", "SegmentationClassAug", "ImageSets/Segmentation"):
        (year / folder).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    width, height = image_size, image_size * 3 // 4
    stems = [f"2012_{index:06d}" for index in range(num_images)]
    aug_stems = [f"aug_{index:06d}" for index in range(2)]
    for stem in [*stems, *aug_stems]:
        boxes = _rectangles(rng, width, height, int(rng.integers(1, 4)))
        labels = [int(rng.integers(1, 6)) for _ in boxes]
        image, mask, owner = _paint(rng, width, height, boxes, labels)
        mask[object_borders(owner)] = IGNORE_INDEX
        Image.fromarray(image).save(year / "JPEGImages" / f"{stem}.jpg", quality=95)
        if not stem.startswith("aug_"):
            save_palette_mask(year / "SegmentationClass" / f"{stem}.png", mask)
        Image.fromarray(mask, mode="L").save(year / "SegmentationClassAug" / f"{stem}.png")
    train, val = stems[0::2], stems[1::2]
    lists = {"train": train, "val": val, "trainval": stems, "train_aug": [*train, *aug_stems, *val[:1]]}
    for name, listed in lists.items():
        (year / "ImageSets" / "Segmentation" / f"{name}.txt").write_text("".join(f"{s}\n" for s in listed))
    return root


def write_coco_segmentation(root: str | Path, num_images: int = 4, image_size: int = 96, seed: int = 0) -> Path:
    """Write root/annotations/instances_{train,val}.json and root/{train,val}/*.jpg; return root.

    Every image has 1-3 rectangle polygons of VOC categories (COCO ids from COCO_VOC_CATEGORY_IDS) and one
    annotation of a non-VOC category; the last train image has only that non-VOC one, so training leaves it out
    (removed_images == 1 for train). Image ids start at 1 per split.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    width, height = image_size, image_size * 3 // 4
    voc_ids = COCO_VOC_CATEGORY_IDS[1:]
    categories = [{"id": cid, "name": f"cat{cid}", "supercategory": "thing"} for cid in [*voc_ids, NON_VOC_CATEGORY_ID]]
    for split in ("train", "val"):
        (root / split).mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for index in range(num_images):
            image_id = index + 1
            file_name = f"{split}_{image_id:04d}.jpg"
            empty = split == "train" and index == num_images - 1
            boxes = _rectangles(rng, width, height, int(rng.integers(1, 4)))
            category_ids = [int(voc_ids[int(rng.integers(len(voc_ids)))]) for _ in boxes]
            if empty:
                category_ids = [NON_VOC_CATEGORY_ID] * len(boxes)
            image, _, _ = _paint(rng, width, height, boxes, [1] * len(boxes))
            Image.fromarray(image).save(root / split / file_name, quality=95)
            images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
            for (x1, y1, x2, y2), category_id in zip(boxes, category_ids, strict=True):
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": category_id,
                        "segmentation": [[x1, y1, x2, y1, x2, y2, x1, y2]],
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "area": float((x2 - x1) * (y2 - y1)),
                        "iscrowd": 0,
                    }
                )
            if not empty:  # a small non-VOC object, which must come out as background
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": NON_VOC_CATEGORY_ID,
                        "segmentation": [[0, 0, 4, 0, 4, 4, 0, 4]],
                        "bbox": [0, 0, 4, 4],
                        "area": 16.0,
                        "iscrowd": 0,
                    }
                )
        document = {"images": images, "annotations": annotations, "categories": categories}
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(document))
    return root
