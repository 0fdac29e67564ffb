"""The "coco" segmentation format: COCO instances as masks of the 20 VOC classes (as torchvision's segmentation
reference), one split a `CocoSegmentation`.

Items, mask values and the bad-sample policy: see tasks/segment/data/masks.py. Where the split's files are:
tasks/common/coco_layout.py. The annotations are read from a cached index of the file
(tasks/segment/data/coco_index.py) and each item's mask is rasterised when read (tasks/segment/data/coco_masks.py).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from tasks.common.categories import VOC_CLASS_NAMES
from tasks.common.coco_layout import CocoSource, coco_source
from tasks.common.formats import DataFormat, fixed_class_names
from tasks.common.images import load_rgb, size_mismatch_message
from tasks.common.index_cache import StringArray, cached_index
from tasks.common.splits import HeldOutSplit
from tasks.segment.data.coco_index import (
    SEGMENTATION_INDEX,
    SEGMENTATION_INDEX_VERSION,
    build_segmentation_index,
    image_annotations,
)
from tasks.segment.data.coco_masks import annotated_area, coco_semantic_mask
from tasks.segment.data.formats import FORMATS
from tasks.segment.data.masks import COCO_VOC_CATEGORY_IDS, InvalidMaskError, SegmentationDataset

logger = logging.getLogger(__name__)
# The reference's _coco_remove_images_without_annotations: a training image is kept when the `area` of its
# VOC-category annotations sums to more than this many pixels.
MIN_ANNOTATED_AREA = 1000.0


class CocoSegmentation(SegmentationDataset):
    """A COCO split (annotations/instances_<split>.json, images in <split>/, or the file and folder `source` names:
    tasks/common/coco_layout.py, with its held-out part) as masks of the 20 VOC classes.

    With `remove_images_without_annotations` (training), images whose VOC-category annotations cover
    `min_annotated_area` pixels or less (by their `area`) are left out, as the reference does; the number is in
    `removed_images` and logged. Evaluation keeps every image. An empty or invalid annotation file, an
    annotation whose category_id or image_id the file does not list, or an image without width/height is a
    ValueError naming the file (and the id) at construction, whatever `skip_bad_samples`; an image whose size
    differs from its `width`/`height` is a bad sample (InvalidMaskError). The annotations are read from a cached
    index of the file (in `cache_dir`, default the suite's cache folder).
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        transform: Any,
        remove_images_without_annotations: bool = False,
        min_annotated_area: float = MIN_ANNOTATED_AREA,
        skip_bad_samples: bool = False,
        cache_dir: str | Path | None = None,
        source: CocoSource | None = None,
    ) -> None:
        super().__init__(VOC_CLASS_NAMES, transform, skip_bad_samples)
        self.root = Path(root)
        self.split = split
        source = source if source is not None else CocoSource.of_split(root, split)
        self.annotation_file = source.annotation_file
        self.index, _ = cached_index(
            self.annotation_file,
            SEGMENTATION_INDEX,
            SEGMENTATION_INDEX_VERSION,
            lambda: build_segmentation_index(self.annotation_file),
            cache_dir,
        )
        self.paths = StringArray(self.index["path_data"], self.index["path_offsets"])
        self.category_to_label = {cid: label for label, cid in enumerate(COCO_VOC_CATEGORY_IDS) if label > 0}
        positions = np.arange(len(self.index["image_ids"]), dtype=np.int64)
        used = source.used(len(positions))
        self.held_out: HeldOutSplit | None = None
        if used is not None:
            positions = positions[used]
            if source.part == "val":
                names = [self.paths[int(i)] for i in positions]
                self.held_out = HeldOutSplit(str(self.annotation_file), names, int((~used).sum()), source.val_fraction)
        self.removed_images = 0
        if remove_images_without_annotations:
            kept = positions[[self._annotated_area(int(i)) > min_annotated_area for i in positions]]
            self.removed_images = len(positions) - len(kept)
            logger.info(
                "%s: left out %d of %d images whose VOC-category annotations cover <= %g px",
                self.annotation_file,
                self.removed_images,
                len(positions),
                min_annotated_area,
            )
            positions = kept
        if not len(positions):
            raise ValueError(f"{self.annotation_file}: no images to use (removed_images={self.removed_images})")
        self.positions = positions  # int64 positions of the used images in the index
        self.image_folder = source.image_folder(self.paths[int(positions[0])])

    @property
    def image_ids(self) -> list[int]:
        return self.index["image_ids"][self.positions].tolist()

    def _annotated_area(self, position: int) -> float:
        """Sum of the image's VOC-category annotations' `area` (decoded from `segmentation` where absent)."""
        start, end = self.index["annotation_offsets"][position : position + 2]
        areas = self.index["areas"][start:end].tolist()
        if not any(np.isnan(areas)):
            return sum(areas)
        height, width = int(self.index["heights"][position]), int(self.index["widths"][position])
        return annotated_area(image_annotations(self.index, position), {"height": height, "width": width})

    def __len__(self) -> int:
        return len(self.positions)

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        position = int(self.positions[index])
        image_id = int(self.index["image_ids"][position])
        path = self.image_folder / self.paths[position]
        image = load_rgb(path)
        height, width = int(self.index["heights"][position]), int(self.index["widths"][position])
        source = f"{self.annotation_file} (image id {image_id})"
        if image.shape[:2] != (height, width):
            raise InvalidMaskError(size_mismatch_message(path, image.shape, width, height, source))
        mask = coco_semantic_mask(
            image_annotations(self.index, position), height, width, self.category_to_label, source
        )
        return image, mask


# -- the "coco" format of the data module ----------------------------------------------------------------------------
def build_coco(data: Any, split: str, transform: Any, train: bool) -> CocoSegmentation:
    """One split; training leaves out the images without VOC-category pixels, as the reference."""
    return CocoSegmentation(
        data.data_root,
        split,
        transform,
        remove_images_without_annotations=train,
        skip_bad_samples=data.skip_bad_samples,
        cache_dir=data.cache_dir,
        source=coco_source(data, split, train),
    )


# COCO's 20 VOC categories become VOC's labels 1..20.
COCO_FORMAT = FORMATS.register(
    DataFormat(name="coco", build=build_coco, class_names=fixed_class_names(VOC_CLASS_NAMES))
)
