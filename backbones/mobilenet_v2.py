"""MobileNetV2 (Sandler et al. 2018, Table 2): inverted residuals with linear bottlenecks."""

from __future__ import annotations

from backbones.registry import register_backbone
from backbones.spec import BlockSpec, ClassifierSpec, NetworkSpec

# expansion t, output channels c, repeats n, first stride s
_TABLE = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),  # C1
    (6, 32, 3, 2),  # C2
    (6, 64, 4, 2),  # C3
    (6, 96, 3, 1),
    (6, 160, 3, 2),  # C4
    (6, 320, 1, 1),
)


@register_backbone("v2")
def mobilenet_v2(*, norm_eps: float = 1e-5) -> NetworkSpec:
    blocks = tuple(
        BlockSpec(c, stride=s if i == 0 else 1, expansion=t, activation="relu6")
        for t, c, n, s in _TABLE
        for i in range(n)
    )
    return NetworkSpec(
        name="v2",
        stem_channels=32,
        stem_activation="relu6",
        blocks=blocks,
        # 1x1 conv to 1280 + BN + ReLU6 before the pool, never narrowed below width 1.0
        classifier=ClassifierSpec(
            hidden_channels=1280, pool_first=False, activation="relu6", dropout=0.2, min_width=1.0
        ),
        norm_eps=norm_eps,
    )
