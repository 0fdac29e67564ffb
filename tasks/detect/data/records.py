"""Detection records (one annotated image each) and the dataset over them that every detection format shares.

Bad samples (an unreadable or missing image, an image whose size differs from its annotation) follow the
bad-sample policy of tasks/common/images.py: an error naming the file, or with `skip_bad_samples=True` a logged,
counted skip; an evaluation loop then sees the substitute item under its own `image_id`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tasks.common.images import ImageSizeMismatchError, SkippingDataset, load_rgb, size_mismatch_message

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectionRecord:
    """One annotated image. Boxes are x1, y1, x2, y2 in original pixels, already clipped and cleaned.

    `width` and `height` are the annotation's, in the displayed frame (EXIF orientation applied); the decoded
    image must have that size. `ignore` flags boxes that are not trained on and that evaluation ignores (COCO
    `iscrowd`, VOC `difficult`). `source` names the annotation in error messages.
    """

    image_id: int
    path: Path
    width: int
    height: int
    boxes: np.ndarray  # float32 [N, 4]
    labels: np.ndarray  # int64 [N], 1..K
    ignore: np.ndarray  # bool [N]
    source: str = "its annotation"


class AnnotatedImages(SkippingDataset):
    """A detection dataset over `records`: items are (image [3, S, S] float32, target dict).

    target: `boxes` float32 [N, 4] in input pixels, `labels` int64 [N] in 1..K (ignored boxes left out),
    `image_id` int, `orig_size` int64 [2] = (H, W), `scale` float32 [2] = (sx, sy), original = input * scale.
    An image whose decoded size differs from its record's raises ImageSizeMismatchError (its boxes were clipped to
    the record's size, and `scale` would map back to the decoded one): a bad sample, as an unreadable image.
    """

    def __init__(
        self,
        records: Sequence[DetectionRecord],
        transform: Any,
        label_to_category_id: Mapping[int, int],
        class_names: Sequence[str],
        skip_bad_samples: bool = False,
    ) -> None:
        super().__init__(skip_bad_samples)
        self.records = list(records)
        self.transform = transform
        self.label_to_category_id = dict(label_to_category_id)
        self.class_names = list(class_names)

    def __len__(self) -> int:
        return len(self.records)

    def _load_item(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        record = self.records[index]
        image = load_rgb(record.path)
        if image.shape[:2] != (record.height, record.width):
            raise ImageSizeMismatchError(
                size_mismatch_message(record.path, image.shape, record.width, record.height, record.source)
            )
        keep = ~record.ignore
        tensor, boxes, labels, scale = self.transform(image, record.boxes[keep], record.labels[keep])
        height, width = image.shape[:2]
        target = {
            "boxes": boxes,
            "labels": labels,
            "image_id": record.image_id,
            "orig_size": torch.tensor([height, width], dtype=torch.int64),
            "scale": scale,
        }
        return tensor, target

    def voc_ground_truth(self) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """image_id -> (boxes float64 [N, 4] original xyxy, labels int64 [N], difficult bool [N]) for VOC mAP.

        `difficult` is VOC's flag, or COCO's `iscrowd`: such boxes are ignored by the VOC evaluation.
        """
        return {
            r.image_id: (r.boxes.astype(np.float64), r.labels.astype(np.int64), r.ignore.copy()) for r in self.records
        }
