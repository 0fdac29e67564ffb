"""A segmentation model: backbone, then a head, then bilinear upsampling to the input size."""

from __future__ import annotations

from pathlib import Path

import torch.nn.functional as F
from torch import Tensor, nn

from backbones.builder import MobileNetBackbone
from backbones.weights import Checkpoint, load_checkpoint
from heads.checkpoints import load_strict, read_model_state


class SegmentationModel(nn.Module):
    """Eval: logits (N, C, H, W) at the input size. Train: {"out": logits, "aux": logits} (aux when the head has it)."""

    def __init__(self, backbone: MobileNetBackbone, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: Tensor) -> Tensor | dict[str, Tensor]:
        size = x.shape[-2:]
        outputs = self.head(self.backbone(x))
        outputs = {k: F.interpolate(v, size=size, mode="bilinear", align_corners=False) for k, v in outputs.items()}
        return outputs if self.training else outputs["out"]


def load_segmenter_weights(model: SegmentationModel, path: str | Path) -> None:
    """torchvision's deeplabv3_mobilenet_v3_large / lraspp_mobilenet_v3_large state dicts, or ours, strictly."""
    path = Path(path)
    state = read_model_state(path, "segmenter")
    if "backbone.0.0.weight" not in state:
        load_strict(model, state, path)
        return
    backbone, head = {}, {}
    lraspp = any(k.startswith("classifier.cbr.") for k in state)
    for key, value in state.items():
        if key.startswith("backbone."):  # torchvision keeps `features` indices under `backbone.`
            backbone["features." + key.removeprefix("backbone.")] = value
        elif lraspp:
            head[key.removeprefix("classifier.")] = value
        else:
            head[key] = value  # classifier.* and aux_classifier.*
    load_checkpoint(model.backbone, Checkpoint(path, "torchvision", backbone))
    load_strict(model.head, head, path)
