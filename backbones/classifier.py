"""A backbone with its paper's classification head."""

from __future__ import annotations

from torch import Tensor, nn

from backbones.builder import MobileNetBackbone
from heads.classification import ClassificationHead


class MobileNetClassifier(nn.Module):
    def __init__(self, backbone: MobileNetBackbone, head: ClassificationHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x)[-1])
