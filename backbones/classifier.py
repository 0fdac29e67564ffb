"""The papers' classifiers: a backbone and its paper's classification head (sized from the spec table's
`classifier` row and the backbone's last feature channels). The head lives here, beside the network it ends,
as timm keeps a classifier inside its model; `create_classifier` (backbones/factory.py) builds both."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from backbones.builder import MobileNetBackbone
from backbones.layers import ConvNormAct, make_activation


class ClassificationHead(nn.Module):
    """Global average pool + FC, with the papers' optional 1x1 widening layer.

    - V1: pool -> FC.
    - V2: 1x1 conv + BN + ReLU6 to `hidden_channels` -> pool -> dropout -> FC (`pool_first=False`).
    - V3: pool -> linear to `hidden_channels` + hard-swish -> dropout -> FC (`pool_first=True`).
    - V4: pool -> 1x1 conv + BN + activation to `hidden_channels` -> dropout -> FC (`hidden_norm=True`).
    """

    # the layer whose output size is the class count: fine-tuning weights of another class count replaces it
    # (`backbones.weights.load_checkpoint`), keeping its fresh initialisation, as timm does
    class_layers: tuple[str, ...] = ("fc",)

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        hidden_channels: int | None = None,
        pool_first: bool = True,
        hidden_norm: bool = False,
        activation: str = "relu",
        dropout: float = 0.0,
        norm_eps: float = 1e-5,
        norm_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        self.conv = None  # widening before the pool (V2)
        self.hidden = None  # widening after the pool (V3)
        self.pooled_conv = None  # widening after the pool, with a norm (V4)
        features = in_channels
        if hidden_channels is not None:
            norm = {"norm_eps": norm_eps, "norm_momentum": norm_momentum}
            if pool_first and hidden_norm:
                self.pooled_conv = ConvNormAct(in_channels, hidden_channels, 1, activation=activation, **norm)
            elif pool_first:
                self.hidden = nn.Sequential(nn.Linear(in_channels, hidden_channels), make_activation(activation))
            else:
                self.conv = ConvNormAct(in_channels, hidden_channels, 1, activation=activation, **norm)
            features = hidden_channels
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(features, num_classes)
        self.num_features = features

    def forward(self, x: Tensor) -> Tensor:
        if self.conv is not None:
            x = self.conv(x)
        x = F.adaptive_avg_pool2d(x, 1)
        if self.pooled_conv is not None:
            x = self.pooled_conv(x)
        x = torch.flatten(x, 1)
        if self.hidden is not None:
            x = self.hidden(x)
        return self.fc(self.dropout(x))


class MobileNetClassifier(nn.Module):
    def __init__(self, backbone: MobileNetBackbone, head: ClassificationHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x)[-1])
