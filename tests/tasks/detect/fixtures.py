"""Tiny COCO and VOC datasets written into a folder, for data tests and CLI smoke tests.

Images are non-square (width = image_size, height = 3/4 of it) so that x and y scales differ, and each object is
a filled rectangle exactly where its box says, so that a model could in principle learn them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from tasks.common.categories import VOC_CLASSES


def _draw(path: Path, width: int, height: int, boxes: Sequence[Sequence[float]], seed: int) -> None:
    """A gray image with one coloured filled rectangle per x1, y1, x2, y2 box (pixel-exact)."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (width, height), (128, 128, 128))
    draw = ImageDraw.Draw(image)
    for x1, y1, x2, y2 in boxes:
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.rectangle((round(x1), round(y1), round(x2) - 1, round(y2) - 1), fill=colour)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, quality=95)


def _random_boxes(rng: np.random.Generator, width: int, height: int, count: int) -> list[list[float]]:
    boxes = []
    for _ in range(count):
        w, h = rng.integers(width // 6, width // 2), rng.integers(height // 6, height // 2)
        x1, y1 = rng.integers(0, width - w), rng.integers(0, height - h)
        boxes.append([float(x1), float(y1), float(x1 + w), float(y1 + h)])
    return boxes


def write_coco_dataset(
    root: str | Path,
    num_images: int = 4,
    image_size: int = 96,
    splits: Sequence[str] = ("train", "val"),
    category_ids: Sequence[int] = (1, 5, 90),
    seed: int = 0,
) -> Path:
    """Write root/annotations/instances_<split>.json and root/<split>/*.jpg for each split; return root.

    Category ids are deliberately non-contiguous (default 1, 5, 90, named "cat<id>"); every image gets 1-3 boxes,
    ids start at 1 per split.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    width, height = image_size, image_size * 3 // 4
    categories = [{"id": int(cid), "name": f"cat{cid}", "supercategory": "thing"} for cid in category_ids]
    for split in splits:
        images, annotations = [], []
        for index in range(num_images):
            image_id = index + 1
            file_name = f"{split}_{image_id:04d}.jpg"
            boxes = _random_boxes(rng, width, height, int(rng.integers(1, 4)))
            _draw(root / split / file_name, width, height, boxes, seed=int(rng.integers(1 << 30)))
            images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
            for x1, y1, x2, y2 in boxes:
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": int(category_ids[int(rng.integers(len(category_ids)))]),
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "area": (x2 - x1) * (y2 - y1),
                        "iscrowd": 0,
                    }
                )
        document = {"images": images, "annotations": annotations, "categories": categories}
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(document))
    return root


def edit_coco_annotations(root: str | Path, split: str, edit: Callable[[dict[str, Any]], None]) -> None:
    """Load instances_<split>.json, let `edit` change the document in place, write it back."""
    path = Path(root) / "annotations" / f"instances_{split}.json"
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document))


def _voc_xml(stem: str, width: int, height: int, objects: Sequence[tuple[str, Sequence[float], bool]]) -> str:
    parts = [
        f"<annotation><folder>VOC</folder><filename>{stem}.jpg</filename>",
        f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>",
    ]
    for name, (x1, y1, x2, y2), difficult in objects:
        # VOC's 1-based inclusive pixel indices: a box covering pixels x1..x2-1 is written x1+1 .. x2.
        parts.append(
            f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
            f"<difficult>{int(difficult)}</difficult><bndbox><xmin>{int(x1) + 1}</xmin><ymin>{int(y1) + 1}</ymin>"
            f"<xmax>{int(x2)}</xmax><ymax>{int(y2)}</ymax></bndbox></object>"
        )
    parts.append("</annotation>")
    return "".join(parts)


def write_voc_dataset(
    root: str | Path,
    num_images: int = 4,
    image_size: int = 96,
    years: Sequence[str] = ("VOC2007",),
    seed: int = 0,
) -> Path:
    """Write a VOCdevkit folder root/<year>/{Annotations,JPEGImages,ImageSets/Main} per year; return root.

    Splits per year: "trainval" (all images), "train" (even positions), "val" (odd), "test" (all). Objects use
    the first classes of VOC_CLASSES; the first image of each year also holds one difficult "person".
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    width, height = image_size, image_size * 3 // 4
    for year in years:
        folder = root / year
        (folder / "Annotations").mkdir(parents=True, exist_ok=True)
        (folder / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
        stems = [f"{year[-4:]}_{index:06d}" for index in range(num_images)]
        for index, stem in enumerate(stems):
            boxes = _random_boxes(rng, width, height, int(rng.integers(1, 4)))
            objects = [(VOC_CLASSES[int(rng.integers(0, 4))], box, False) for box in boxes]
            if index == 0:
                objects.append(("person", [2.0, 2.0, 12.0, 14.0], True))
            _draw(folder / "JPEGImages" / f"{stem}.jpg", width, height, [box for _, box, _ in objects], seed=index)
            (folder / "Annotations" / f"{stem}.xml").write_text(_voc_xml(stem, width, height, objects))
        lists = {"trainval": stems, "train": stems[0::2], "val": stems[1::2], "test": stems}
        for name, listed in lists.items():
            (folder / "ImageSets" / "Main" / f"{name}.txt").write_text("".join(f"{s}\n" for s in listed))
    return root
