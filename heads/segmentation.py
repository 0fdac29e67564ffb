"""A segmentation model: backbone, then a head, then bilinear upsampling to the input size."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from backbones.builder import MobileNetBackbone


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
