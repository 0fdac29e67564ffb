"""Detection weights: torchvision's SSDLite key map, the detector's loader and the published SSDLite entries.

`load_detector_weights` reads a torchvision `ssdlite320_mobilenet_v3_large` state dict (split by `TORCHVISION_SSDLITE`
into a torchvision MobileNet backbone and our head's names) or one of ours; the entries name registered models
(`ssdlite320_<backbone>`, `tasks/detect/spec.py`).
"""

from __future__ import annotations

import re
from pathlib import Path

from torch import nn

from backbones.weights.categories import COCO_CATEGORIES
from backbones.weights.keymaps import TORCHVISION_CONV_NORM, StateDict, TaskKeymap
from backbones.weights.loaders import load_task_weights
from backbones.weights.registry import HALF, TORCHVISION_META, TORCHVISION_MODELS, register_weights


def _split_torchvision_ssdlite(model: nn.Module, state: StateDict, path: Path) -> tuple[StateDict, StateDict]:
    # torchvision splits the backbone at the C4 block's expansion: features.0 = everything up to and including
    # that expansion, features.1 = the rest of that block, then the remaining blocks
    c4 = int(model.backbone.feature_info[0].module.split(".")[1]) + 1  # index in torchvision's `features`
    backbone, head = {}, {}
    for key, value in state.items():
        if match := re.fullmatch(r"backbone\.features\.0\.(\d+)\.(.+)", key):
            index, rest = int(match[1]), match[2]
            backbone[f"features.{index}.{rest}" if index < c4 else f"features.{c4}.block.0.{rest}"] = value
        elif match := re.fullmatch(r"backbone\.features\.1\.0\.(\d+)\.(.+)", key):
            backbone[f"features.{c4}.block.{match[1]}.{match[2]}"] = value  # slicing keeps the block indices
        elif match := re.fullmatch(r"backbone\.features\.1\.(\d+)\.(.+)", key):
            backbone[f"features.{c4 + int(match[1])}.{match[2]}"] = value
        elif match := re.fullmatch(r"backbone\.extra\.(\d+)\.(\d+)\.([01])\.(.+)", key):
            head[f"extra.{match[1]}.{match[2]}.{TORCHVISION_CONV_NORM[match[3]]}.{match[4]}"] = value
        elif match := re.fullmatch(r"head\.(classification|regression)_head\.module_list\.(\d+)\.0\.([01])\.(.+)", key):
            head[f"{match[1]}.{match[2]}.0.{TORCHVISION_CONV_NORM[match[3]]}.{match[4]}"] = value
        elif match := re.fullmatch(r"head\.(classification|regression)_head\.module_list\.(\d+)\.1\.(.+)", key):
            head[f"{match[1]}.{match[2]}.1.{match[3]}"] = value
        else:
            raise RuntimeError(f"{path}: unexpected key {key!r} for a torchvision SSDLite checkpoint")
    return backbone, head


# torchvision's ssdlite320_mobilenet_v3_large
TORCHVISION_SSDLITE = TaskKeymap("torchvision", "backbone.features.0.0.0.weight", _split_torchvision_ssdlite)


def load_detector_weights(model: nn.Module, path: str | Path) -> None:
    """An SSDLite: torchvision's `ssdlite320_mobilenet_v3_large` state dict or one of ours."""
    load_task_weights(model, path, (TORCHVISION_SSDLITE,), "detector")


register_weights(
    "ssdlite320_v3_large",
    "coco",
    url=TORCHVISION_MODELS + "ssdlite320_mobilenet_v3_large_coco-a79551df.pth",
    sha256="a79551df",
    mean=HALF,  # torchvision's SSDLite normalises inside the model, from [0, 1] to [-1, 1]
    std=HALF,
    image_size=320,
    categories=COCO_CATEGORIES,
    metrics={"COCO val2017 box AP": 21.3},
    metrics_source=TORCHVISION_META.format("detection.SSDLite320_MobileNet_V3_Large_Weights.COCO_V1")
    + "; recipe https://github.com/pytorch/vision/tree/main/references/detection#ssdlite320-mobilenetv3-large",
    source="torchvision",
    build_options={"reduced_tail": True},
)
