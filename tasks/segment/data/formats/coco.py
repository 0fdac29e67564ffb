"""COCO instances as masks of the 20 VOC classes (as torchvision's segmentation reference), and the "coco" format.

Items, mask values and the bad-sample policy: see tasks/segment/data/masks.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from tasks.common.categories import VOC_CLASS_NAMES
from tasks.common.coco import check_coco_references, coco_annotation_file, load_coco
from tasks.common.datamodule import DataFormat, fixed_class_names
from tasks.common.images import load_rgb, size_mismatch_message
from tasks.segment.data.formats import FORMATS
from tasks.segment.data.masks import COCO_VOC_CATEGORY_IDS, InvalidMaskError, SegmentationDataset
from tasks.segment.data.transforms import IGNORE_INDEX

logger = logging.getLogger(__name__)
# The reference's _coco_remove_images_without_annotations: a training image is kept when the `area` of its
# VOC-category annotations sums to more than this many pixels.
MIN_ANNOTATED_AREA = 1000.0


# -- COCO as VOC classes -------------------------------------------------------------------------------------------
def instance_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """One annotation's `segmentation` (polygons, uncompressed or compressed RLE) as a uint8 0/1 mask [H, W].

    As the reference's convert_coco_poly_to_mask: frPyObjects, decode, union of the parts.
    """
    if isinstance(segmentation, list) and not segmentation:
        return np.zeros((height, width), dtype=np.uint8)
    if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), str):
        rle: Any = {"size": segmentation["size"], "counts": segmentation["counts"].encode()}  # compressed RLE
    else:
        rle = mask_utils.frPyObjects(segmentation, height, width)
    decoded = mask_utils.decode(rle)
    if decoded.ndim < 3:
        decoded = decoded[..., None]
    if decoded.shape[:2] != (height, width):
        raise ValueError(f"its RLE is {decoded.shape[1]}x{decoded.shape[0]}, the image {width}x{height}")
    return decoded.any(axis=2).astype(np.uint8)


def coco_semantic_mask(
    annotations: Sequence[Mapping[str, Any]],
    height: int,
    width: int,
    category_to_label: Mapping[int, int],
    source: str = "annotations",
) -> np.ndarray:
    """Merge instance annotations into one uint8 label mask [H, W], exactly as torchvision's reference.

    references/segmentation/coco_utils.py (FilterAndRemapCocoCategories + ConvertCocoPolysToMask): keep the
    annotations of mapped categories (crowd ones included), `target = (masks * cats[:, None, None]).max(0)`,
    then `target[masks.sum(0) > 1] = 255`: every pixel covered by two or more instances, of the same class or
    not, becomes ignore. Unmapped categories are background.
    """
    kept = [a for a in annotations if a["category_id"] in category_to_label]
    if not kept:
        return np.zeros((height, width), dtype=np.uint8)
    masks = []
    for annotation in kept:
        try:
            masks.append(instance_mask(annotation["segmentation"], height, width))
        except Exception as error:  # pycocotools raises a bare Exception for unsupported input
            raise InvalidMaskError(
                f"{source}: annotation {annotation.get('id')} has an unreadable 'segmentation' "
                f"(valid: polygons [[x, y, ...], ...] or RLE {{'size', 'counts'}}): {error}"
            ) from error
    stacked = np.stack(masks)
    labels = np.array([category_to_label[a["category_id"]] for a in kept], dtype=np.uint8)
    target = (stacked * labels[:, None, None]).max(axis=0)
    target[stacked.sum(axis=0, dtype=np.int64) > 1] = IGNORE_INDEX
    return target


def annotated_area(annotations: Iterable[Mapping[str, Any]], image_info: Mapping[str, Any]) -> float:
    """Sum of the annotations' `area` (decoded from `segmentation` where `area` is absent)."""
    total = 0.0
    for annotation in annotations:
        if "area" in annotation:
            total += float(annotation["area"])
        else:
            total += float(instance_mask(annotation["segmentation"], image_info["height"], image_info["width"]).sum())
    return total


def coco_image_folder(root: Path, split: str, first_file_name: str | None) -> Path:
    """root/<split>, root/images/<split>, or root itself when file names carry their sub-path (as CocoDetection)."""
    folders = [root / split, root / "images" / split]
    if first_file_name is not None:
        for folder in [*folders, root]:
            if (folder / first_file_name).is_file():
                return folder
    for folder in folders:
        if folder.is_dir():
            return folder
    raise FileNotFoundError(f"image folder for COCO split {split!r} not found: tried {folders[0]} and {folders[1]}")


class CocoSegmentation(SegmentationDataset):
    """A COCO split (annotations/instances_<split>.json, images in <split>/) as masks of the 20 VOC classes.

    With `remove_images_without_annotations` (training), images whose VOC-category annotations cover
    `min_annotated_area` pixels or less (by their `area`) are left out, as the reference does; the number is in
    `removed_images` and logged. Evaluation keeps every image. An empty or invalid annotation file, an
    annotation whose category_id or image_id the file does not list, or an image without width/height is a
    ValueError naming the file (and the id) at construction, whatever `skip_bad_samples`; an image whose size
    differs from its `width`/`height` is a bad sample (InvalidMaskError).
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        transform: Any,
        remove_images_without_annotations: bool = False,
        min_annotated_area: float = MIN_ANNOTATED_AREA,
        skip_bad_samples: bool = False,
    ) -> None:
        super().__init__(VOC_CLASS_NAMES, transform, skip_bad_samples)
        self.root = Path(root)
        self.split = split
        self.annotation_file = coco_annotation_file(root, split)
        self.coco = load_coco(self.annotation_file)
        check_coco_references(self.coco, self.annotation_file)
        self.category_to_label = {cid: label for label, cid in enumerate(COCO_VOC_CATEGORY_IDS) if label > 0}
        image_ids = sorted(self.coco.imgs)
        self.removed_images = 0
        if remove_images_without_annotations:
            kept = [
                i for i in image_ids if annotated_area(self._voc_annotations(i), self.coco.imgs[i]) > min_annotated_area
            ]
            self.removed_images = len(image_ids) - len(kept)
            logger.info(
                "%s: left out %d of %d images whose VOC-category annotations cover <= %g px",
                self.annotation_file,
                self.removed_images,
                len(image_ids),
                min_annotated_area,
            )
            image_ids = kept
        if not image_ids:
            raise ValueError(f"{self.annotation_file}: no images to use (removed_images={self.removed_images})")
        self.image_ids = image_ids
        self.image_folder = coco_image_folder(self.root, split, self.coco.imgs[image_ids[0]]["file_name"])

    def _voc_annotations(self, image_id: int) -> list[dict[str, Any]]:
        return [a for a in self.coco.imgToAnns.get(image_id, []) if a["category_id"] in self.category_to_label]

    def __len__(self) -> int:
        return len(self.image_ids)

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image_id = self.image_ids[index]
        info = self.coco.imgs[image_id]
        path = self.image_folder / info["file_name"]
        image = load_rgb(path)
        height, width = int(info["height"]), int(info["width"])
        source = f"{self.annotation_file} (image id {image_id})"
        if image.shape[:2] != (height, width):
            raise InvalidMaskError(size_mismatch_message(path, image.shape, width, height, source))
        mask = coco_semantic_mask(self._voc_annotations(image_id), height, width, self.category_to_label, source)
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
    )


# COCO's 20 VOC categories become VOC's labels 1..20.
COCO_FORMAT = FORMATS.register(
    DataFormat(name="coco", build=build_coco, class_names=fixed_class_names(VOC_CLASS_NAMES))
)
