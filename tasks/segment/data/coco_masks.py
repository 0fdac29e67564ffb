"""COCO instance annotations merged into one semantic label mask (the "coco" format's 20 VOC classes), exactly as
torchvision's segmentation reference does it: polygons or RLE decoded through pycocotools, overlaps ignored."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from tasks.segment.data.masks import InvalidMaskError
from tasks.segment.data.transforms import IGNORE_INDEX


def decode_rle(rle: Any) -> np.ndarray:
    """pycocotools' `mask.decode`. Under numpy 2 it warns about its own `__array__` on every call, which a user
    cannot act on: that one DeprecationWarning is silenced here, unless the user set `-W` / PYTHONWARNINGS."""
    if sys.warnoptions or os.environ.get("PYTHONWARNINGS"):
        return mask_utils.decode(rle)
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"__array__ implementation doesn't accept", category=DeprecationWarning
        )
        return mask_utils.decode(rle)


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
    decoded = decode_rle(rle)
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
