"""Semantic segmentation with DeepLabV3 or LR-ASPP on any MobileNet: `python -m tasks.segment fit --head lraspp`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from torch import nn

from backbones import create_backbone
from backbones.builder import set_norm_momentum
from backbones.weights import check_build_options, resolve_weights
from heads.deeplabv3 import DeepLabV3Head
from heads.lraspp import LRASPPHead
from heads.segmentation import SegmentationModel
from tasks.common.task import NORM_MOMENTUM
from tasks.models import model_name
from tasks.segment.weights import load_segmenter_weights

Head = Literal["lraspp", "deeplabv3"]


def build_segmenter(
    backbone: str,
    head: Head,
    num_classes: int,
    *,
    width: float = 1.0,
    output_stride: int = 16,
    aux_loss: bool = False,
    weights: str | Path | None = None,
    backbone_weights: str | Path | None = None,
    backbone_options: dict[str, Any] | None = None,
) -> SegmentationModel:
    """DeepLabV3 or LR-ASPP on the backbone's C2 (stride 8) and last maps, as torchvision taps them.

    `weights`: a tag of `list_weights(<its registered name>)` ("coco_voc": torchvision's), a URL, or a file:
    torchvision's `deeplabv3_mobilenet_v3_large` (with or without aux) or `lraspp_mobilenet_v3_large` state dict, or
    one of ours (another setting than a tag's `build_options`, e.g. deeplabv3's `aux_loss=True`, is a named error).
    Weights of another class count fine-tune: everything loads but the head's final class convolutions
    (`class_layers`), which keep their fresh (torchvision's default) initialisation and are named in one log line.
    `backbone_weights`: what `backbones.create_backbone` takes ("imagenet", a URL, a file). The backbone's batch norms
    move at the tasks' `NORM_MOMENTUM`.
    `backbone_options`: spec options of the backbone variant (e.g. V1's `activation`, `norm_eps`); the tasks pass
    back the ones a checkpoint recorded (`TaskModule`), so that it rebuilds the variant it was trained as.
    """
    if head not in ("lraspp", "deeplabv3"):
        raise ValueError(f"unknown head {head!r}; valid: lraspp, deeplabv3")
    if aux_loss and head != "deeplabv3":
        raise ValueError("aux_loss is an option of the deeplabv3 head (an FCN head on the stride-8 map)")
    name = model_name("segment", head=head, backbone=backbone)
    check_build_options(name, weights, {"width": width, "output_stride": output_stride, "aux_loss": aux_loss})
    features = create_backbone(
        backbone,
        width=width,
        out_indices=("c2", -1),
        output_stride=output_stride,
        weights=backbone_weights,
        **(backbone_options or {}),
    )
    set_norm_momentum(features, NORM_MOMENTUM)
    channels = features.feature_info.channels()
    if head == "lraspp":
        decoder: nn.Module = LRASPPHead(channels, num_classes)
    else:
        decoder = DeepLabV3Head(channels, num_classes, aux=aux_loss)
    model = SegmentationModel(features, decoder)
    path, _ = resolve_weights(name, weights)
    if path is not None:
        load_segmenter_weights(model, path)
    return model
