"""Lite R-ASPP (MobileNetV3 paper, section 6.3): a 1x1 conv + BN + ReLU on the last map, gated by a global-pool
1x1 conv + sigmoid branch, upsampled and added to a classifier on the stride-8 map. torchvision's module, so its
checkpoints load by name."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor
from torchvision.models.segmentation.lraspp import LRASPPHead as _TorchvisionLRASPPHead

INNER_CHANNELS = 128


class LRASPPHead(_TorchvisionLRASPPHead):
    """Takes [stride-8 map, last map]; returns {"out"} at the stride-8 resolution."""

    # the layers whose output size is the class count: fine-tuning weights of another class count replaces them
    # (`backbones.weights.load_task_weights`), keeping their default initialisation, as torchvision's
    class_layers: tuple[str, ...] = ("low_classifier", "high_classifier")

    def __init__(self, in_channels: Sequence[int], num_classes: int, inter_channels: int = INNER_CHANNELS) -> None:
        low, high = in_channels
        super().__init__(low, high, num_classes, inter_channels)

    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:  # type: ignore[override]
        return {"out": super().forward({"low": features[0], "high": features[-1]})}
