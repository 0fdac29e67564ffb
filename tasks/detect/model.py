"""Object detection with SSDLite on any MobileNet: `python -m tasks.detect fit --backbone v3_large`."""

from __future__ import annotations

import logging
from pathlib import Path

from torch import Tensor

from backbones import create_backbone
from backbones.builder import normal_init, set_norm_momentum
from heads.ssdlite import NORM, SSDLite
from heads.ssdlite_weights import load_detector_weights

log = logging.getLogger(__name__)
DEFAULT_IMAGE_SIZE = 320
PAPER_IMAGE_SIZE = {"v1": 300}  # the V1 paper's SSD runs at 300x300


def build_detector(
    backbone: str,
    num_classes: int,
    *,
    width: float = 1.0,
    image_size: int | None = None,
    reduced_tail: bool = False,
    weights: str | Path | None = None,
    backbone_weights: str | Path | None = None,
) -> SSDLite:
    """SSDLite on `backbone`; `num_classes` counts the background (91 for torchvision's COCO models).

    `weights`: a torchvision `ssdlite320_mobilenet_v3_large` state dict (build with `reduced_tail=True`)
    or one of ours; `backbone_weights`: any checkpoint `backbones.create_backbone` reads.
    `image_size` (default 320, 300 for v1) is the square input the data pipeline resizes to.
    """
    options = {"reduced_tail": True} if reduced_tail else {}
    features = create_backbone(
        backbone, width=width, out_indices=("c4_expansion", -1), weights=backbone_weights, **options
    )
    if backbone_weights is None:
        normal_init(features)  # torchvision's from-scratch SSDLite initialisation
    set_norm_momentum(features, NORM["norm_momentum"])
    model = SSDLite(features, num_classes, width=width)
    model.image_size = image_size or PAPER_IMAGE_SIZE.get(backbone, DEFAULT_IMAGE_SIZE)
    if weights is not None:
        load_detector_weights(model, weights)
    return model


def to_original_coordinates(detections: list[dict[str, Tensor]], scales: list[Tensor], sizes: list[Tensor]):
    """Boxes from input pixels back to each original image's pixels, clipped to it."""
    mapped = []
    for detection, scale, size in zip(detections, scales, sizes, strict=True):
        boxes = detection["boxes"] * scale.to(detection["boxes"]).repeat(2)
        height, width = (int(v) for v in size)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        mapped.append({**detection, "boxes": boxes})
    return mapped
