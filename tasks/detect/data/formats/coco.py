"""COCO-format detection data, and the "coco" format: any COCO annotation file with its image folder.

Where the files are, named by `train_annotations` / `train_images` (and val, test) or discovered under `root`
(this suite's `annotations/instances_<split>.json`, COCO 2017, Roboflow, CVAT; a single file is split by
`val_fraction`), is tasks/common/coco_layout.py. Category ids (COCO's 1..90 with gaps) map to contiguous labels
1..K sorted by id; `label_to_category_id` maps back. `iscrowd` boxes are not trained on but stay in `coco_gt` (the
annotation file's images of the split), which COCOeval reads.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO

from tasks.common.coco import (
    class_names_of,
    coco_tables,
    load_coco,
    read_coco_categories,
    read_coco_json_without_segmentation,
)
from tasks.common.coco_layout import FILE_ARGUMENTS, CocoSource, coco_layout, coco_source
from tasks.common.index_cache import Arrays, Meta, cached_index
from tasks.common.splits import HeldOutSplit
from tasks.detect.data.formats import FORMATS, DetectionFormat
from tasks.detect.data.records import (
    AnnotatedImages,
    DetectionRecords,
    StringArray,
    clip_and_drop_small_per_box,
    offsets_of,
)

logger = logging.getLogger(__name__)

# The cached index of a COCO file for detection (tasks/common/index_cache.py); bump the version when its arrays
# or their meaning change, so that older cached indices are rebuilt.
DETECTION_INDEX = "detection"
DETECTION_INDEX_VERSION = 1


def _boxes_xywh(annotations: list[dict[str, Any]], annotation_file: Path) -> np.ndarray:
    """float32 [A, 4] of the annotations' `bbox`; ValueError naming the file and the first bad annotation."""
    try:
        return np.array([a["bbox"] for a in annotations], dtype=np.float32).reshape(-1, 4)
    except (KeyError, TypeError, ValueError):
        for annotation in annotations:
            bbox = annotation.get("bbox")
            if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, int | float) for v in bbox)):
                raise ValueError(
                    f"{annotation_file}: annotation {annotation.get('id')} has bbox {bbox!r}; expected [x, y, w, h]"
                ) from None
        raise


def build_detection_index(annotation_file: Path) -> tuple[Arrays, Meta]:
    """The flat detection records of a COCO file: images sorted by id, boxes x1 y1 x2 y2 clipped to their image,
    those under 1 px dropped (counted in meta["dropped_boxes"] unless crowd), labels 1..K by category id, crowd
    flags as `ignore`; no polygons. Errors: see CocoDetection."""
    document = read_coco_json_without_segmentation(annotation_file)
    if not document.get("categories"):
        raise ValueError(f"{annotation_file} has no 'categories'; at least one is required")
    tables = coco_tables(document, annotation_file)
    del document
    order = tables.annotation_order
    ordered = [tables.annotations[i] for i in order]
    xywh = _boxes_xywh(ordered, annotation_file)
    xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    crowd = np.array([bool(a.get("iscrowd", 0)) for a in ordered], dtype=bool)
    del ordered
    category_ids = np.array([int(c["id"]) for c in tables.categories], dtype=np.int64)
    labels = np.searchsorted(category_ids, tables.annotation_category_ids[order]).astype(np.int64) + 1
    counts = np.diff(tables.image_starts)
    boxes, valid = clip_and_drop_small_per_box(
        xyxy, np.repeat(tables.heights, counts), np.repeat(tables.widths, counts)
    )
    image_of_box = np.repeat(np.arange(len(counts)), counts)
    arrays = {
        **tables.image_arrays(),
        "box_offsets": offsets_of(np.bincount(image_of_box[valid], minlength=len(counts))),
        "boxes": boxes[valid],
        "labels": labels[valid],
        "ignore": crowd[valid],
    }
    meta = {"categories": tables.categories, "dropped_boxes": int((~valid & ~crowd).sum())}
    return arrays, meta


class CocoDetection(AnnotatedImages):
    """One split of a COCO-format dataset: `root/annotations/instances_<split>.json` with images in `root/<split>/`
    or `root/images/<split>/` (or `file_name`s holding their sub-path below root), or any file and folder `source`
    names (tasks/common/coco_layout.py), whose `part` may be the train or val part of a held-out split (the val part
    then carries `held_out`); `transform` is a DetectionTransform.

    Its records are flat arrays read from a cached index of the annotation file (built on first use into
    `cache_dir`, default the suite's cache folder: tasks/common/index_cache.py); `coco_gt`, pycocotools' index of
    the whole file, is loaded on first use, which only evaluation does.

    `dropped_boxes` counts the non-crowd boxes under 1 px wide or high after clipping to their image (a warning
    with the count is logged once). An empty or invalid annotation file, an annotation whose category_id or
    image_id the file does not list, or an image without width/height is a ValueError naming the file (and the
    id) at construction. A missing or unreadable image (UnreadableImageError) and an image whose size differs from
    its `width`/`height` (ImageSizeMismatchError) are bad samples, found when read: errors, or with
    `skip_bad_samples` skipped and counted in `skipped_images`.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        transform: Any,
        skip_bad_samples: bool = False,
        cache_dir: str | Path | None = None,
        source: CocoSource | None = None,
    ) -> None:
        self.root = Path(root)
        self.split = split
        source = source if source is not None else CocoSource.of_split(root, split)
        self.annotation_file = source.annotation_file
        arrays, meta = cached_index(
            self.annotation_file,
            DETECTION_INDEX,
            DETECTION_INDEX_VERSION,
            lambda: build_detection_index(self.annotation_file),
            cache_dir,
        )
        categories = meta["categories"]
        self.dropped_boxes = int(meta["dropped_boxes"])
        self._coco_gt: COCO | None = None
        paths = StringArray(arrays["path_data"], arrays["path_offsets"])
        records = DetectionRecords(
            image_ids=arrays["image_ids"],
            widths=arrays["widths"],
            heights=arrays["heights"],
            paths=paths,
            box_offsets=arrays["box_offsets"],
            boxes=arrays["boxes"],
            labels=arrays["labels"],
            ignore=arrays["ignore"],
            sources=f"{self.annotation_file} (image id {{image_id}})",
            folder=source.image_folder(paths[0] if len(paths) else None),
        )
        used = source.used(len(records))
        self.held_out: HeldOutSplit | None = None
        if used is not None:
            records = records.take(np.flatnonzero(used))
            if source.part == "val":
                names = [records.paths[i] for i in range(len(records))]
                self.held_out = HeldOutSplit(str(self.annotation_file), names, int((~used).sum()), source.val_fraction)
        self._image_ids = None if used is None else records.image_ids
        super().__init__(
            records,
            transform,
            {label: int(c["id"]) for label, c in enumerate(categories, start=1)},
            class_names_of(categories),
            skip_bad_samples,
        )
        if self.dropped_boxes:
            logger.warning(
                "%s: dropped %d boxes under 1 px wide or high (after clipping to their image)",
                self.annotation_file,
                self.dropped_boxes,
            )

    @property
    def coco_gt(self) -> COCO:
        """pycocotools' index of the annotation file (crowd boxes included), of this split's images only, which
        COCOeval reads; loaded on first use, so training splits never hold it."""
        if self._coco_gt is None:
            self._coco_gt = load_coco(self.annotation_file, self._image_ids)
        return self._coco_gt


# -- the "coco" format of the data module ----------------------------------------------------------------------------
def coco_categories(data: Any) -> list[dict[str, Any]]:
    """The categories of the val split's annotation file, sorted by id: usually far smaller than train's, and
    every split must have the same."""
    return read_coco_categories(coco_layout(data).source("val").annotation_file)


def coco_class_names(data: Any) -> list[str]:
    return class_names_of(coco_categories(data))


def coco_label_to_category_id(data: Any) -> dict[int, int]:
    """Label 1..K -> the file's own category id."""
    return {label: int(c["id"]) for label, c in enumerate(coco_categories(data), start=1)}


def build_coco(data: Any, split: str, transform: Any, train: bool) -> CocoDetection:
    """One split; the data module checks that its categories are the model's (`class_names`)."""
    return CocoDetection(
        data.data_root,
        split,
        transform,
        skip_bad_samples=data.skip_bad_samples,
        cache_dir=data.cache_dir,
        source=coco_source(data, split, train),
    )


COCO_FORMAT = FORMATS.register(
    DetectionFormat(
        name="coco",
        build=build_coco,
        class_names=coco_class_names,
        label_to_category_id=coco_label_to_category_id,
        options=FILE_ARGUMENTS,
        root_alternatives=("train_annotations", "val_annotations"),
    )
)
