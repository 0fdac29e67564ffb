"""Detection records (one annotated image each) and the dataset over them that every detection format shares.

At COCO train2017 scale (118k images, 860k boxes) the records live in flat numpy arrays (`DetectionRecords`: boxes,
labels and flags concatenated with per-image offsets, paths in one byte buffer), not one Python object per image:
DataLoader workers forked from the main process share those pages, where touching Python objects would copy them
(refcounts) and grow every worker over an epoch, as detectron2's and mmengine's serialised dataset lists avoid.
A `DetectionRecord` is made on demand when one is indexed.

Bad samples (an unreadable or missing image, an image whose size differs from its annotation) follow the
bad-sample policy of tasks/common/images.py: an error naming the file, or with `skip_bad_samples=True` a logged,
counted skip; an evaluation loop then sees the substitute item under its own `image_id`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tasks.common.images import ImageSizeMismatchError, SkippingDataset, load_rgb, size_mismatch_message
from tasks.common.index_cache import StringArray, offsets_of
from tasks.detect.data.transforms import MIN_BOX_SIZE

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


def clip_and_drop_small_per_box(
    boxes: np.ndarray, heights: np.ndarray, widths: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """`clip_and_drop_small` (transforms.py) for boxes of many images at once, each with its image's height and
    width: the clipped float32 boxes and the mask of those at least MIN_BOX_SIZE wide and high (same arithmetic:
    float32 clamp to [0, side], then width and height >= MIN_BOX_SIZE)."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    limits = np.stack([widths, heights, widths, heights], axis=1).astype(np.float32)
    clipped = np.minimum(np.maximum(boxes, np.float32(0)), limits)
    keep = (clipped[:, 2] - clipped[:, 0] >= MIN_BOX_SIZE) & (clipped[:, 3] - clipped[:, 1] >= MIN_BOX_SIZE)
    return clipped, keep


class DetectionRecords(Sequence[DetectionRecord]):
    """The records of a whole split in flat arrays; indexing makes one `DetectionRecord`.

    Per image i: `image_ids[i]`, `widths[i]`, `heights[i]`, its path `folder / paths[i]`, its boxes, labels and
    ignore flags at `box_offsets[i]:box_offsets[i + 1]` of `boxes` [M, 4] float32, `labels` [M] int64 and
    `ignore` [M] bool. `sources` names each image's annotation in errors: one string per image, or one template
    in which `{image_id}` is replaced. The arrays may be memory-mapped from an index file (tasks/common/index_cache.py).
    """

    def __init__(
        self,
        image_ids: np.ndarray,
        widths: np.ndarray,
        heights: np.ndarray,
        paths: StringArray,
        box_offsets: np.ndarray,
        boxes: np.ndarray,
        labels: np.ndarray,
        ignore: np.ndarray,
        sources: StringArray | str,
        folder: Path | None = None,
    ) -> None:
        count = len(image_ids)
        if not (len(widths) == len(heights) == len(paths) == len(box_offsets) - 1 == count):
            raise ValueError(f"record arrays disagree on the number of images ({count})")
        if not (len(boxes) == len(labels) == len(ignore) == int(box_offsets[-1])):
            raise ValueError(f"box arrays disagree on the number of boxes ({int(box_offsets[-1])})")
        self.image_ids = image_ids
        self.widths = widths
        self.heights = heights
        self.paths = paths
        self.box_offsets = box_offsets
        self.boxes = boxes
        self.labels = labels
        self.ignore = ignore
        self.sources = sources
        self.folder = folder

    @classmethod
    def from_records(cls, records: Sequence[DetectionRecord]) -> DetectionRecords:
        """Flatten `DetectionRecord`s (paths kept whole, one source string each)."""
        records = list(records)

        def joined(field: str, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
            parts = [np.asarray(getattr(r, field), dtype=dtype).reshape(-1, *shape) for r in records]
            return np.concatenate(parts) if parts else np.zeros((0, *shape), dtype=dtype)

        return cls(
            image_ids=np.array([r.image_id for r in records], dtype=np.int64),
            widths=np.array([r.width for r in records], dtype=np.int64),
            heights=np.array([r.height for r in records], dtype=np.int64),
            paths=StringArray.from_strings([str(r.path) for r in records]),
            box_offsets=offsets_of([len(r.boxes) for r in records]),
            boxes=joined("boxes", np.float32, (4,)),
            labels=joined("labels", np.int64, ()),
            ignore=joined("ignore", bool, ()),
            sources=StringArray.from_strings([r.source for r in records]),
        )

    def take(self, positions: np.ndarray) -> DetectionRecords:
        """The records at `positions` (in that order) as new arrays, e.g. one part of a held-out split."""
        positions = np.asarray(positions, dtype=np.int64)
        starts = self.box_offsets[positions]
        counts = self.box_offsets[positions + 1] - starts
        offsets = offsets_of(counts)
        boxes = np.arange(int(offsets[-1]), dtype=np.int64) + np.repeat(starts - offsets[:-1], counts)

        def strings(array: StringArray) -> StringArray:
            return StringArray.from_strings([array[int(i)] for i in positions])

        return DetectionRecords(
            image_ids=self.image_ids[positions],
            widths=self.widths[positions],
            heights=self.heights[positions],
            paths=strings(self.paths),
            box_offsets=offsets,
            boxes=self.boxes[boxes],
            labels=self.labels[boxes],
            ignore=self.ignore[boxes],
            sources=self.sources if isinstance(self.sources, str) else strings(self.sources),
            folder=self.folder,
        )

    def __len__(self) -> int:
        return len(self.image_ids)

    def path(self, index: int) -> Path:
        name = self.paths[index]
        return self.folder / name if self.folder is not None else Path(name)

    def source(self, index: int) -> str:
        if isinstance(self.sources, str):
            return self.sources.replace("{image_id}", str(int(self.image_ids[index])))
        return self.sources[index]

    def __getitem__(self, index: int) -> DetectionRecord:  # type: ignore[override]
        if not -len(self) <= index < len(self):
            raise IndexError(f"record {index} out of range for {len(self)} images")
        index = index % len(self)
        start, end = int(self.box_offsets[index]), int(self.box_offsets[index + 1])
        return DetectionRecord(
            image_id=int(self.image_ids[index]),
            path=self.path(index),
            width=int(self.widths[index]),
            height=int(self.heights[index]),
            boxes=np.asarray(self.boxes[start:end], dtype=np.float32),
            labels=np.asarray(self.labels[start:end], dtype=np.int64),
            ignore=np.asarray(self.ignore[start:end], dtype=bool),
            source=self.source(index),
        )

    def __iter__(self) -> Iterator[DetectionRecord]:
        return (self[i] for i in range(len(self)))


class AnnotatedImages(SkippingDataset):
    """A detection dataset over `records`: items are (image [3, S, S] float32, target dict).

    target: `boxes` float32 [N, 4] in input pixels, `labels` int64 [N] in 1..K (ignored boxes left out),
    `image_id` int, `orig_size` int64 [2] = (H, W), `scale` float32 [2] = (sx, sy), original = input * scale.
    An image whose decoded size differs from its record's raises ImageSizeMismatchError (its boxes were clipped to
    the record's size, and `scale` would map back to the decoded one): a bad sample, as an unreadable image.
    """

    def __init__(
        self,
        records: DetectionRecords | Sequence[DetectionRecord],
        transform: Any,
        label_to_category_id: Mapping[int, int],
        class_names: Sequence[str],
        skip_bad_samples: bool = False,
    ) -> None:
        super().__init__(skip_bad_samples)
        self.records = records if isinstance(records, DetectionRecords) else DetectionRecords.from_records(records)
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
