"""COCO-format detection data: `root/annotations/instances_<split>.json`, images in `root/<split>/`.

Also accepted: images in `root/images/<split>/`, or `file_name`s that already hold a sub-path below `root`.
Category ids (COCO's 1..90 with gaps) map to contiguous labels 1..K sorted by id; `label_to_category_id` maps back.
`iscrowd` boxes are not trained on but stay in `coco_gt` (the annotation file itself), which COCOeval reads.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from tasks.common.coco import (
    check_coco_references,
    class_names_of,
    coco_annotation_file,
    load_coco,
    read_coco_categories,
)
from tasks.detect.data.formats import FORMATS, DetectionFormat
from tasks.detect.data.records import AnnotatedImages, DetectionRecord
from tasks.detect.data.transforms import clip_and_drop_small

logger = logging.getLogger(__name__)


class CocoDetection(AnnotatedImages):
    """One split of a COCO-format dataset (see the module docstring); `transform` is a DetectionTransform.

    `dropped_boxes` counts the non-crowd boxes under 1 px wide or high after clipping to their image (a warning
    with the count is logged once). An empty or invalid annotation file, an annotation whose category_id or
    image_id the file does not list, or an image without width/height is a ValueError naming the file (and the
    id) at construction. A missing or unreadable image (UnreadableImageError) and an image whose size differs from
    its `width`/`height` (ImageSizeMismatchError) are bad samples, found when read: errors, or with
    `skip_bad_samples` skipped and counted in `skipped_images`.
    """

    def __init__(self, root: str | Path, split: str, transform: Any, skip_bad_samples: bool = False) -> None:
        self.root = Path(root)
        self.split = split
        self.annotation_file = coco_annotation_file(root, split)
        self.coco_gt = load_coco(self.annotation_file)
        categories = sorted(self.coco_gt.dataset.get("categories") or [], key=lambda c: c["id"])
        if not categories:
            raise ValueError(f"{self.annotation_file} has no 'categories'; at least one is required")
        category_to_label = {c["id"]: label for label, c in enumerate(categories, start=1)}
        self.dropped_boxes = 0
        records = self._records(category_to_label)
        super().__init__(
            records,
            transform,
            {label: cid for cid, label in category_to_label.items()},
            class_names_of(categories),
            skip_bad_samples,
        )
        if self.dropped_boxes:
            logger.warning(
                "%s: dropped %d boxes under 1 px wide or high (after clipping to their image)",
                self.annotation_file,
                self.dropped_boxes,
            )

    def _image_folder(self, first_file_name: str | None) -> Path:
        """root/<split>, root/images/<split>, or root itself when file names carry their sub-path."""
        folders = [self.root / self.split, self.root / "images" / self.split]
        if first_file_name is not None:
            for folder in [*folders, self.root]:
                if (folder / first_file_name).is_file():
                    return folder
        for folder in folders:
            if folder.is_dir():
                return folder
        raise FileNotFoundError(
            f"image folder for COCO split {self.split!r} not found: tried {folders[0]} and {folders[1]}"
            + (f" (and {self.root / first_file_name})" if first_file_name else "")
        )

    def _records(self, category_to_label: dict[int, int]) -> list[DetectionRecord]:
        coco = self.coco_gt
        check_coco_references(coco, self.annotation_file)
        image_ids = sorted(coco.imgs)
        folder = self._image_folder(coco.imgs[image_ids[0]]["file_name"] if image_ids else None)
        records = []
        for image_id in image_ids:
            info = coco.imgs[image_id]
            width, height = int(info["width"]), int(info["height"])
            annotations = coco.imgToAnns.get(image_id, [])
            xywh = np.array([a["bbox"] for a in annotations], dtype=np.float32).reshape(-1, 4)
            xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
            boxes, valid = clip_and_drop_small(xyxy, height, width)
            crowd = np.array([bool(a.get("iscrowd", 0)) for a in annotations], dtype=bool)
            self.dropped_boxes += int((~valid & ~crowd).sum())
            labels = np.array([category_to_label[a["category_id"]] for a in annotations], dtype=np.int64)
            records.append(
                DetectionRecord(
                    image_id=int(image_id),
                    path=folder / info["file_name"],
                    width=width,
                    height=height,
                    boxes=boxes[valid],
                    labels=labels[valid],
                    ignore=crowd[valid],
                    source=f"{self.annotation_file} (image id {image_id})",
                )
            )
        return records


# -- the "coco" format of the data module ----------------------------------------------------------------------------
def coco_categories(data: Any) -> list[dict[str, Any]]:
    """The categories of the val split's annotation file, sorted by id: usually far smaller than train's, and
    every split must have the same."""
    return read_coco_categories(coco_annotation_file(data.data_root, data.val_split))


def coco_class_names(data: Any) -> list[str]:
    return class_names_of(coco_categories(data))


def coco_label_to_category_id(data: Any) -> dict[int, int]:
    """Label 1..K -> the file's own category id."""
    return {label: int(c["id"]) for label, c in enumerate(coco_categories(data), start=1)}


def build_coco(data: Any, split: str, transform: Any, train: bool) -> CocoDetection:
    """One split; its categories must be the val split's (the labels the model was built with)."""
    dataset = CocoDetection(data.data_root, split, transform, skip_bad_samples=data.skip_bad_samples)
    if dataset.class_names != data.class_names:
        raise ValueError(
            f"{dataset.annotation_file}: categories {dataset.class_names[1:]} differ from those of split "
            f"{data.val_split!r} {data.class_names[1:]}; all splits must share one category list"
        )
    return dataset


COCO_FORMAT = FORMATS.register(
    DetectionFormat(
        name="coco",
        build=build_coco,
        class_names=coco_class_names,
        label_to_category_id=coco_label_to_category_id,
    )
)
