"""COCO annotation files: reading, checked tables, pycocotools' index, categories and class names.

Where a dataset's files are (named, or discovered under a root) is tasks/common/coco_layout.py. Category ids
(COCO's 1..90 with gaps) map to contiguous labels 1..K sorted by id; `label_to_category_id` maps back.
`iscrowd` boxes are not trained on but stay in `coco_gt` (the annotation file itself), which COCOeval reads.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO

from tasks.common.categories import BACKGROUND
from tasks.common.index_cache import StringArray

logger = logging.getLogger(__name__)


try:  # the fastest available reader: orjson parses a 500 MB annotation file several times faster than json
    import orjson

    def parse_json(data: bytes) -> Any:
        """The JSON value in `data` (orjson)."""
        return orjson.loads(data)

except ImportError:  # pragma: no cover - orjson is a dependency; json is the fallback

    def parse_json(data: bytes) -> Any:
        """The JSON value in `data` (json)."""
        return json.loads(data)


# An annotation's "segmentation": polygons (a list of number lists) or RLE (an object without nested objects).
# One character or one inner list per step, never a run of characters inside the repeat: a value the pattern does
# not fit (deeper nesting) then fails in linear time instead of backtracking exponentially.
SEGMENTATION_VALUE = re.compile(rb'"segmentation"\s*:\s*(?:\[(?:[^\[\]]|\[[^\[\]]*\])*\]|\{[^{}]*\})')


def read_coco_json(annotation_file: str | Path) -> dict[str, Any]:
    """The annotation file's JSON object; ValueError naming the file when it is empty, truncated or not an object."""
    return _coco_document(Path(annotation_file).read_bytes(), annotation_file)


def read_coco_json_without_segmentation(annotation_file: str | Path) -> dict[str, Any]:
    """`read_coco_json` with every annotation's `segmentation` null, for readers of boxes only. Polygons are most of
    a COCO file (train2017: ~57M coordinates); replaced in the bytes before parsing, the file parses ~4x faster in a
    fifth of the memory. Bytes the replacement leaves unparseable (a key named so inside a string) are parsed whole.
    """
    data = Path(annotation_file).read_bytes()
    try:
        return _coco_document(SEGMENTATION_VALUE.sub(b'"segmentation":null', data), annotation_file)
    except ValueError:
        return _coco_document(data, annotation_file)


def _coco_document(data: bytes, annotation_file: str | Path) -> dict[str, Any]:
    try:
        document = parse_json(data)
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


def load_coco(annotation_file: str | Path, image_ids: Collection[int] | None = None) -> COCO:
    """pycocotools' index of the annotation file for box evaluation (as `COCO(path)` with every `segmentation`
    null, with read_coco_json's errors, silently); with `image_ids`, of those images and their annotations only
    (every category kept), e.g. a held-out split's."""
    coco = COCO()
    coco.dataset = read_coco_json_without_segmentation(annotation_file)
    if image_ids is not None:
        keep = {int(i) for i in image_ids}
        dataset = coco.dataset
        dataset["images"] = [image for image in dataset.get("images") or [] if image["id"] in keep]
        dataset["annotations"] = [a for a in dataset.get("annotations") or [] if a.get("image_id") in keep]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco.createIndex()
    return coco


@dataclass
class CocoTables:
    """A COCO document's images and annotations as arrays, checked, without pycocotools' index.

    Images are sorted by id (duplicates: the last wins, as pycocotools); `annotation_order` lists the annotations
    (indices into `annotations`, the document's list) grouped by image in that order and in file order within an
    image, `image_starts` [N + 1] delimits each image's group in it.
    """

    image_ids: np.ndarray  # int64 [N], sorted
    widths: np.ndarray  # int64 [N]
    heights: np.ndarray  # int64 [N]
    file_names: list[str]
    categories: list[dict[str, Any]]  # sorted by id
    annotations: list[dict[str, Any]]
    annotation_category_ids: np.ndarray  # int64 [A], in the document's order
    annotation_order: np.ndarray  # int64 [A]
    image_starts: np.ndarray  # int64 [N + 1]

    def image_arrays(self) -> dict[str, np.ndarray]:
        """The per-image arrays of an index: ids, widths, heights, file names (a StringArray's data and offsets)."""
        paths = StringArray.from_strings(self.file_names)
        return {
            "image_ids": self.image_ids,
            "widths": self.widths,
            "heights": self.heights,
            "path_data": paths.data,
            "path_offsets": paths.offsets,
        }


def _integer_ids(values: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(ids int64, valid bool): as set membership did, a value equal to an integer (1, 1.0) is that id; anything
    else (None, a string, 1.5) is invalid."""
    try:
        array = np.array(values, dtype=np.int64)
        return array, np.asarray(np.array(values, dtype=object) == array, dtype=bool).reshape(len(values))
    except (TypeError, ValueError, OverflowError):

        def integral(value: Any) -> bool:
            return isinstance(value, int | float) and np.isfinite(value) and value == int(value) and abs(value) < 2**62

        valid = np.array([integral(v) for v in values], dtype=bool)
        return np.array([int(v) if ok else 0 for v, ok in zip(values, valid, strict=True)], dtype=np.int64), valid


def coco_tables(document: dict[str, Any], annotation_file: str | Path) -> CocoTables:
    """The checked tables of a parsed annotation file (`read_coco_json`): ValueError naming the file and the
    annotation or image id when an annotation refers to an image or a category the file does not list, or an
    image lacks its `file_name`, `width` or `height`. Checked with arrays, not pycocotools' index."""
    categories = sorted(document.get("categories") or [], key=lambda c: c["id"])
    images_by_id = {image["id"]: image for image in document.get("images") or []}
    for image_id, info in images_by_id.items():
        missing = [key for key in ("file_name", "width", "height") if key not in info]
        if missing:
            raise ValueError(f"{annotation_file}: image {image_id} has no {', '.join(repr(k) for k in missing)}")
    image_ids = sorted(images_by_id)
    annotations = document.get("annotations") or []
    category_ids = np.array([int(c["id"]) for c in categories], dtype=np.int64)
    annotation_categories, category_ok = _integer_ids([a.get("category_id") for a in annotations])
    category_ok &= np.isin(annotation_categories, category_ids)
    annotation_images, image_ok = _integer_ids([a.get("image_id") for a in annotations])
    sorted_ids = np.array(image_ids, dtype=np.int64)
    position = np.searchsorted(sorted_ids, annotation_images).clip(max=max(len(sorted_ids) - 1, 0))
    image_ok &= (sorted_ids[position] == annotation_images) if len(sorted_ids) else False
    bad = ~(category_ok & image_ok)
    if bad.any():
        annotation = annotations[int(np.argmax(bad))]
        if not category_ok[int(np.argmax(bad))]:
            raise ValueError(
                f"{annotation_file}: annotation {annotation.get('id')} has category_id "
                f"{annotation.get('category_id')}, which is not among its categories {category_ids.tolist()}"
            )
        raise ValueError(
            f"{annotation_file}: annotation {annotation.get('id')} refers to image_id "
            f"{annotation.get('image_id')}, which is not among its images"
        )
    order = np.argsort(position, kind="stable")
    starts = np.searchsorted(position[order], np.arange(len(image_ids) + 1))
    infos = [images_by_id[i] for i in image_ids]
    return CocoTables(
        image_ids=sorted_ids,
        widths=np.array([int(info["width"]) for info in infos], dtype=np.int64),
        heights=np.array([int(info["height"]) for info in infos], dtype=np.int64),
        file_names=[str(info["file_name"]) for info in infos],
        categories=categories,
        annotations=annotations,
        annotation_category_ids=annotation_categories,
        annotation_order=order.astype(np.int64),
        image_starts=starts.astype(np.int64),
    )


def read_coco_categories(annotation_file: str | Path) -> list[dict[str, Any]]:
    """The file's categories sorted by id (the order of labels 1..K); at least one is required."""
    categories = read_coco_json_without_segmentation(annotation_file).get("categories") or []
    if not categories:
        raise ValueError(f"{annotation_file} has no 'categories'; at least one is required")
    return sorted(categories, key=lambda c: c["id"])


def class_names_of(categories: list[dict[str, Any]]) -> list[str]:
    """["background", *names in label order]."""
    return [BACKGROUND, *(str(c["name"]) for c in categories)]
