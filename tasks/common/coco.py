"""COCO-format detection data: `root/annotations/instances_<split>.json`, images in `root/<split>/`.

Also accepted: images in `root/images/<split>/`, or `file_name`s that already hold a sub-path below `root`.
Category ids (COCO's 1..90 with gaps) map to contiguous labels 1..K sorted by id; `label_to_category_id` maps back.
`iscrowd` boxes are not trained on but stay in `coco_gt` (the annotation file itself), which COCOeval reads.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path
from typing import Any

from pycocotools.coco import COCO

from tasks.common.categories import BACKGROUND

logger = logging.getLogger(__name__)


def coco_annotation_file(root: str | Path, split: str) -> Path:
    """`root/annotations/instances_<split>.json`; FileNotFoundError naming the path when it is missing."""
    path = Path(root) / "annotations" / f"instances_{split}.json"
    if not path.is_file():
        raise FileNotFoundError(f"COCO annotation file {path} not found (format='coco', split={split!r})")
    return path


def read_coco_json(annotation_file: str | Path) -> dict[str, Any]:
    """The annotation file's JSON object; ValueError naming the file when it is empty, truncated or not an object."""
    try:
        with open(annotation_file) as handle:
            document = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"COCO annotation file {annotation_file} is not valid JSON (empty or truncated?): {error}"
        ) from error
    if not isinstance(document, dict):
        raise ValueError(
            f"COCO annotation file {annotation_file} holds a JSON {type(document).__name__}, not an object with "
            "'images', 'annotations' and 'categories'"
        )
    return document


def load_coco(annotation_file: str | Path) -> COCO:
    """pycocotools' index of the annotation file (as `COCO(path)`, with read_coco_json's errors, silently)."""
    coco = COCO()
    coco.dataset = read_coco_json(annotation_file)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco.createIndex()
    return coco


def check_coco_references(coco: COCO, annotation_file: str | Path) -> None:
    """ValueError naming the file and the annotation or image id when an annotation refers to an image or a
    category the file does not list, or an image lacks its `file_name`, `width` or `height`."""
    category_ids = sorted(c["id"] for c in coco.dataset.get("categories") or [])
    known = set(category_ids)
    for annotation in coco.dataset.get("annotations", []):
        if annotation.get("category_id") not in known:
            raise ValueError(
                f"{annotation_file}: annotation {annotation.get('id')} has category_id "
                f"{annotation.get('category_id')}, which is not among its categories {category_ids}"
            )
        if annotation.get("image_id") not in coco.imgs:
            raise ValueError(
                f"{annotation_file}: annotation {annotation.get('id')} refers to image_id "
                f"{annotation.get('image_id')}, which is not among its images"
            )
    for image_id, info in coco.imgs.items():
        missing = [key for key in ("file_name", "width", "height") if key not in info]
        if missing:
            raise ValueError(f"{annotation_file}: image {image_id} has no {', '.join(repr(k) for k in missing)}")


def read_coco_categories(annotation_file: str | Path) -> list[dict[str, Any]]:
    """The file's categories sorted by id (the order of labels 1..K); at least one is required."""
    categories = read_coco_json(annotation_file).get("categories") or []
    if not categories:
        raise ValueError(f"{annotation_file} has no 'categories'; at least one is required")
    return sorted(categories, key=lambda c: c["id"])


def class_names_of(categories: list[dict[str, Any]]) -> list[str]:
    """["background", *names in label order]."""
    return [BACKGROUND, *(str(c["name"]) for c in categories)]
