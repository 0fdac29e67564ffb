"""DeepLabV3 (Chen et al. 2017) as in the MobileNetV2 paper: ASPP on the last map, optional FCN auxiliary head.

ASPP = a 1x1 branch, three atrous 3x3 branches, image pooling, 256 channels each, then a 1x1 projection with
dropout; torchvision's modules are used as they are, so its checkpoints load by name.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torchvision.models.segmentation.deeplabv3 import DeepLabHead
from torchvision.models.segmentation.fcn import FCNHead

ATROUS_RATES = (12, 24, 36)  # torchvision's for its MobileNetV3 DeepLabV3 at output stride 16


class DeepLabV3Head(nn.Module):
    """Takes [stride-8 map, last map]; returns {"out", and with `aux` "aux"} at the maps' resolutions."""

    # the layers whose output size is the class count (the last 1x1 conv of DeepLabHead and of FCNHead): fine-tuning
    # weights of another class count replaces them (`backbones.weights.load_task_weights`), keeping their default
    # initialisation, as torchvision's
    class_layers: tuple[str, ...] = ("classifier.4", "aux_classifier.4")

    def __init__(
        self, in_channels: Sequence[int], num_classes: int, aux: bool = False, atrous_rates=ATROUS_RATES
    ) -> None:
        super().__init__()
        low, high = in_channels
        self.classifier = DeepLabHead(high, num_classes, atrous_rates)
        self.aux_classifier = FCNHead(low, num_classes) if aux else None

    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:
        outputs = {"out": self.classifier(features[-1])}
        if self.aux_classifier is not None:
            outputs["aux"] = self.aux_classifier(features[0])
        return outputs
