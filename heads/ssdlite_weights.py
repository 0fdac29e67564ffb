"""Loading SSDLite checkpoints: torchvision's `ssdlite320_mobilenet_v3_large` layout, or this project's own."""

from __future__ import annotations

import re
from pathlib import Path

from torch import Tensor

from backbones.weights import Checkpoint, load_checkpoint
from heads.checkpoints import load_strict, read_model_state
from heads.ssdlite import SSDLite

_CONV_NORM = {"0": "conv", "1": "norm"}


def load_detector_weights(model: SSDLite, path: str | Path) -> None:
    """Load a torchvision SSDLite state dict or one of ours (also inside a Lightning checkpoint), strictly."""
    path = Path(path)
    state = read_model_state(path, "detector")
    if "backbone.features.0.0.0.weight" in state:
        _load_torchvision(model, state, path)
    elif "backbone.stem.conv.weight" in state:
        load_strict(model, state, path)
    else:
        raise ValueError(
            f"{path}: not a torchvision or mobilenet-suite SSDLite checkpoint; first keys: {list(state)[:5]}"
        )


def _load_torchvision(model: SSDLite, state: dict[str, Tensor], path: Path) -> None:
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
            head[f"extra.{match[1]}.{match[2]}.{_CONV_NORM[match[3]]}.{match[4]}"] = value
        elif match := re.fullmatch(r"head\.(classification|regression)_head\.module_list\.(\d+)\.0\.([01])\.(.+)", key):
            head[f"{match[1]}.{match[2]}.0.{_CONV_NORM[match[3]]}.{match[4]}"] = value
        elif match := re.fullmatch(r"head\.(classification|regression)_head\.module_list\.(\d+)\.1\.(.+)", key):
            head[f"{match[1]}.{match[2]}.1.{match[3]}"] = value
        else:
            raise RuntimeError(f"{path}: unexpected key {key!r} for a torchvision SSDLite checkpoint")
    load_checkpoint(model.backbone, Checkpoint(path, "torchvision", backbone))
    load_strict(model.head, head, path)
