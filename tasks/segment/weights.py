"""Segmentation weights: torchvision's DeepLabV3 / LR-ASPP key map, the segmenter's loader and the published entries.

`load_segmenter_weights` reads torchvision's `deeplabv3_mobilenet_v3_large` (with or without aux) and
`lraspp_mobilenet_v3_large` state dicts (split by `TORCHVISION_SEGMENTATION`) or one of ours; the entries name
registered models (`<head>_<backbone>`, `tasks/segment/spec.py`).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from backbones.weights.categories import VOC_CATEGORIES
from backbones.weights.keymaps import StateDict, TaskKeymap
from backbones.weights.loaders import load_task_weights
from backbones.weights.registry import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TORCHVISION_META,
    TORCHVISION_MODELS,
    register_weights,
)


def _split_torchvision_segmentation(model: nn.Module, state: StateDict, path: Path) -> tuple[StateDict, StateDict]:
    # torchvision keeps the MobileNet's `features` indices under `backbone.`; LR-ASPP's head is `classifier.*`,
    # DeepLabV3's head is `classifier.*` and `aux_classifier.*` as in ours
    backbone, head = {}, {}
    lraspp = any(k.startswith("classifier.cbr.") for k in state)
    for key, value in state.items():
        if key.startswith("backbone."):
            backbone["features." + key.removeprefix("backbone.")] = value
        else:
            head[key.removeprefix("classifier.") if lraspp else key] = value
    return backbone, head


# torchvision's deeplabv3_mobilenet_v3_large (with or without aux) and lraspp_mobilenet_v3_large
TORCHVISION_SEGMENTATION = TaskKeymap("torchvision", "backbone.0.0.weight", _split_torchvision_segmentation)


def load_segmenter_weights(model: nn.Module, path: str | Path) -> None:
    """A SegmentationModel: torchvision's deeplabv3_/lraspp_mobilenet_v3_large state dicts or one of ours."""
    load_task_weights(model, path, (TORCHVISION_SEGMENTATION,), "segmenter")


for _name, _class, _file, _miou, _options in (
    ("deeplabv3_v3_large", "DeepLabV3", "deeplabv3_mobilenet_v3_large-fc3c493d.pth", 60.3, {"aux_loss": True}),
    ("lraspp_v3_large", "LRASPP", "lraspp_mobilenet_v3_large-d234d4ea.pth", 57.9, {}),
):
    _recipe = "https://github.com/pytorch/vision/tree/main/references/segmentation#" + _file.rsplit("-", 1)[0]
    register_weights(
        _name,
        "coco_voc",
        url=TORCHVISION_MODELS + _file,
        sha256=_file.rsplit("-", 1)[1].split(".")[0],
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        image_size=520,  # torchvision evaluates at a shorter side of 520, no crop
        resize_size=520,
        categories=VOC_CATEGORIES,
        metrics={"COCO val2017 (VOC categories) mIoU": _miou, "pixel accuracy": 91.2},
        metrics_source=TORCHVISION_META.format(
            f"segmentation.{_class}_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1"
        )
        + f"; recipe {_recipe}",
        source="torchvision",
        build_options=_options,
    )
