"""Object detection with SSDLite on any MobileNet: `python -m tasks.detect fit --backbone v3_large`."""

from __future__ import annotations

from pathlib import Path

from backbones import create_backbone
from heads.ssdlite import SSDLite, normal_init
from heads.ssdlite_weights import load_detector_weights

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
    model = SSDLite(features, num_classes, width=width)
    model.image_size = image_size or PAPER_IMAGE_SIZE.get(backbone, DEFAULT_IMAGE_SIZE)
    if weights is not None:
        load_detector_weights(model, weights)
    return model
