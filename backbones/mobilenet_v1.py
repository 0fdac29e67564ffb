"""MobileNetV1 (Howard et al. 2017, Table 1): a stem conv and 13 depthwise-separable blocks."""

from __future__ import annotations

from typing import Literal

from backbones.registry import register_backbone
from backbones.spec import BlockSpec, ClassifierSpec, NetworkSpec


@register_backbone("v1")
def mobilenet_v1(*, activation: Literal["relu", "relu6"] = "relu", norm_eps: float = 1e-5) -> NetworkSpec:
    """The paper uses ReLU; TF-slim and timm's weights use ReLU6."""

    def separable(out_channels: int, stride: int = 1) -> BlockSpec:
        # 3x3 depthwise + BN + act, then 1x1 pointwise + BN + act; no shortcut
        return BlockSpec(
            out_channels, stride=stride, activation=activation, project_activation=activation, residual=False
        )

    blocks = (
        separable(64),
        separable(128, 2),  # C1
        separable(128),
        separable(256, 2),  # C2
        separable(256),
        separable(512, 2),  # C3
        *[separable(512) for _ in range(5)],
        separable(1024, 2),  # C4 (the paper's table prints s2 for the last block too, a known typo)
        separable(1024),
    )
    return NetworkSpec(
        name="v1",
        stem_channels=32,
        stem_activation=activation,
        blocks=blocks,
        classifier=ClassifierSpec(),
        norm_eps=norm_eps,
    )
