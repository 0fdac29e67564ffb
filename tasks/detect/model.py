"""Object detection with SSDLite on any MobileNet: `python -m tasks.detect fit --backbone v3_large`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from backbones import create_backbone
from backbones.builder import set_norm_momentum
from backbones.weights import check_build_options, resolve_weights
from heads.ssdlite import SSDLite, normal_init
from tasks.common.task import NORM_MOMENTUM
from tasks.detect.weights import load_detector_weights
from tasks.models import model_name

DEFAULT_IMAGE_SIZE = 320


def build_detector(
    backbone: str,
    num_classes: int,
    *,
    width: float = 1.0,
    reduced_tail: bool = False,
    weights: str | Path | None = None,
    backbone_weights: str | Path | None = None,
    backbone_options: dict[str, Any] | None = None,
) -> SSDLite:
    """SSDLite on `backbone`; `num_classes` counts the background (91 for torchvision's COCO models).

    `weights`: a tag of `list_weights(<its registered name>)` ("coco": torchvision's, build with
    `reduced_tail=True`; another setting than a tag's `build_options` is a named error), a URL, or a file: a
    torchvision `ssdlite320_mobilenet_v3_large` state dict or one of ours. Weights of another class count fine-tune:
    everything loads but each level's class predictor (`SSDLiteHead.class_layers`), which keeps its fresh
    torchvision initialisation (normal, std 0.03, bias 0) and is named in one log line.
    `backbone_weights`: what `backbones.create_backbone` takes ("imagenet", a URL, a file).
    Every batch norm, backbone and head, moves at the tasks' `NORM_MOMENTUM`.
    `backbone_options`: spec options of the backbone variant (e.g. V1's `activation`, `norm_eps`); the tasks pass
    back the ones a checkpoint recorded (`TaskModule`), so that it rebuilds the variant it was trained as.
    """
    name = model_name("detect", backbone=backbone)
    check_build_options(name, weights, {"width": width, "reduced_tail": reduced_tail})
    options = {**(backbone_options or {}), **({"reduced_tail": True} if reduced_tail else {})}
    features = create_backbone(
        backbone, width=width, out_indices=("c4_expansion", -1), weights=backbone_weights, **options
    )
    if backbone_weights is None:
        normal_init(features)  # torchvision's from-scratch SSDLite initialises its backbone this way too
    model = SSDLite(features, num_classes, width=width)
    set_norm_momentum(model, NORM_MOMENTUM)
    path, _ = resolve_weights(name, weights)
    if path is not None:
        load_detector_weights(model, path)
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
