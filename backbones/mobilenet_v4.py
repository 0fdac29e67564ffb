"""MobileNetV4 (Qin et al. 2024, its architecture tables): Conv-S/M/L and Hybrid-M/L.

Rows are the paper's, grouped stage by stage as there (and as timm's `_gen_mobilenet_v4`, whose weights these
tables load): `uib(start, middle, expansion, out)` is the Universal Inverted Bottleneck with its start and middle
depthwise kernels (0: absent), so ExtraDW is `uib(k, k', ...)`, IB `uib(0, k, ...)`, ConvNeXt-like `uib(k, 0, ...)`
and FFN `uib(0, 0, ...)`; `fused_ib` is the fused IB; `mqa` is Mobile MQA. Expansions are ratios of the block's
input channels. Every network ends with a 1x1 conv to 960 and the pooled 1x1 conv + BN to 1280 of the head.
"""

from __future__ import annotations

from backbones.registry import register_backbone
from backbones.spec import AttentionSpec, BlockSpec, ClassifierSpec, NetworkSpec

Row = BlockSpec | AttentionSpec
Stage = tuple[Row, ...]
LAYER_SCALE = 1e-5  # the hybrids' layer-scale initial value, on UIB and MQA rows


def stage(*groups: tuple[Row, ...]) -> Stage:
    return tuple(row for group in groups for row in group)


class _Table:
    """Rows of one network, written with its activation and layer scale."""

    def __init__(self, activation: str, layer_scale: float | None = None) -> None:
        self.activation, self.layer_scale = activation, layer_scale

    def conv(self, kernel: int, out: int, stride: int = 1) -> tuple[Row]:
        return (BlockSpec(out, kernel=kernel, stride=stride, activation=self.activation, kind="conv"),)

    def fused_ib(self, kernel: int, expansion: float, out: int, stride: int) -> tuple[Row]:
        row = BlockSpec(
            out, kernel=0, expand_kernel=kernel, stride=stride, expansion=expansion, activation=self.activation
        )
        return (row,)

    def uib(
        self, start: int, middle: int, expansion: float, out: int, stride: int = 1, repeat: int = 1
    ) -> tuple[Row, ...]:
        """`repeat` rows, only the first strided (the paper's and timm's repeat rule)."""
        return tuple(
            BlockSpec(
                out,
                kernel=middle,
                start_kernel=start,
                stride=stride if i == 0 else 1,
                expansion=expansion,
                activation=self.activation,
                layer_scale=self.layer_scale,
            )
            for i in range(repeat)
        )

    def mqa(self, heads: int, key_dim: int, out: int, kv_stride: int = 1) -> tuple[Row]:
        return (AttentionSpec(out, heads=heads, key_dim=key_dim, kv_stride=kv_stride, layer_scale=self.layer_scale),)


def _conv_small() -> list[Stage]:
    t = _Table("relu")
    return [
        # 112 px in
        stage(t.conv(3, 32, 2), t.conv(1, 32)),
        # 56 px
        stage(t.conv(3, 96, 2), t.conv(1, 64)),
        # 28 px
        stage(t.uib(5, 5, 3, 96, 2), t.uib(0, 3, 2, 96, repeat=4), t.uib(3, 0, 4, 96)),
        # 14 px
        stage(
            t.uib(3, 3, 6, 128, 2),
            t.uib(5, 5, 4, 128),
            t.uib(0, 5, 4, 128),
            t.uib(0, 5, 3, 128),
            t.uib(0, 3, 4, 128, repeat=2),
        ),
        # 7 px
        stage(t.conv(1, 960)),
    ]


def _conv_medium() -> list[Stage]:
    t = _Table("relu")
    return [
        stage(t.fused_ib(3, 4, 48, 2)),
        stage(t.uib(3, 5, 4, 80, 2), t.uib(3, 3, 2, 80)),
        stage(
            t.uib(3, 5, 6, 160, 2),
            t.uib(3, 3, 4, 160, repeat=2),
            t.uib(3, 5, 4, 160),
            t.uib(3, 3, 4, 160),
            t.uib(3, 0, 4, 160),
            t.uib(0, 0, 2, 160),
            t.uib(3, 0, 4, 160),
        ),
        stage(
            t.uib(5, 5, 6, 256, 2),
            t.uib(5, 5, 4, 256),
            t.uib(3, 5, 4, 256, repeat=2),
            t.uib(0, 0, 4, 256),
            t.uib(3, 0, 4, 256),
            t.uib(3, 5, 2, 256),
            t.uib(5, 5, 4, 256),
            t.uib(0, 0, 4, 256, repeat=2),
            t.uib(5, 0, 2, 256),
        ),
        stage(t.conv(1, 960)),
    ]


def _conv_large() -> list[Stage]:
    t = _Table("relu")
    return [
        stage(t.fused_ib(3, 4, 48, 2)),
        stage(t.uib(3, 5, 4, 96, 2), t.uib(3, 3, 4, 96)),
        stage(
            t.uib(3, 5, 4, 192, 2),
            t.uib(3, 3, 4, 192, repeat=3),
            t.uib(3, 5, 4, 192),
            t.uib(5, 3, 4, 192, repeat=5),
            t.uib(3, 0, 4, 192),
        ),
        stage(
            t.uib(5, 5, 4, 512, 2, repeat=4),
            t.uib(5, 0, 4, 512),
            t.uib(5, 3, 4, 512),
            t.uib(5, 0, 4, 512, repeat=2),
            t.uib(5, 3, 4, 512),
            t.uib(5, 5, 4, 512),
            t.uib(5, 0, 4, 512, repeat=3),
        ),
        stage(t.conv(1, 960)),
    ]


def _hybrid_medium() -> list[Stage]:
    t = _Table("relu", LAYER_SCALE)
    return [
        stage(t.fused_ib(3, 4, 48, 2)),
        stage(t.uib(3, 5, 4, 80, 2), t.uib(3, 3, 2, 80)),
        stage(
            t.uib(3, 5, 6, 160, 2),
            t.uib(0, 0, 2, 160),
            t.uib(3, 3, 4, 160),
            t.uib(3, 5, 4, 160),
            t.mqa(4, 64, 160, kv_stride=2),
            t.uib(3, 3, 4, 160),
            t.mqa(4, 64, 160, kv_stride=2),
            t.uib(3, 0, 4, 160),
            t.mqa(4, 64, 160, kv_stride=2),
            t.uib(3, 3, 4, 160),
            t.mqa(4, 64, 160, kv_stride=2),
            t.uib(3, 0, 4, 160),
        ),
        stage(
            t.uib(5, 5, 6, 256, 2),
            t.uib(5, 5, 4, 256),
            t.uib(3, 5, 4, 256, repeat=2),
            t.uib(0, 0, 2, 256),
            t.uib(3, 5, 2, 256),
            t.uib(0, 0, 2, 256),
            t.uib(0, 0, 4, 256),
            t.mqa(4, 64, 256),
            t.uib(3, 0, 4, 256),
            t.mqa(4, 64, 256),
            t.uib(5, 5, 4, 256),
            t.mqa(4, 64, 256),
            t.uib(5, 0, 4, 256),
            t.mqa(4, 64, 256),
            t.uib(5, 0, 4, 256),
        ),
        stage(t.conv(1, 960)),
    ]


def _hybrid_large() -> list[Stage]:
    t = _Table("gelu", LAYER_SCALE)
    return [
        stage(t.fused_ib(3, 4, 48, 2)),
        stage(t.uib(3, 5, 4, 96, 2), t.uib(3, 3, 4, 96)),
        stage(
            t.uib(3, 5, 4, 192, 2),
            t.uib(3, 3, 4, 192, repeat=3),
            t.uib(3, 5, 4, 192),
            t.uib(5, 3, 4, 192, repeat=2),
            t.mqa(8, 48, 192, kv_stride=2),
            t.uib(5, 3, 4, 192),
            t.mqa(8, 48, 192, kv_stride=2),
            t.uib(5, 3, 4, 192),
            t.mqa(8, 48, 192, kv_stride=2),
            t.uib(5, 3, 4, 192),
            t.mqa(8, 48, 192, kv_stride=2),
            t.uib(3, 0, 4, 192),
        ),
        stage(
            t.uib(5, 5, 4, 512, 2, repeat=4),
            t.uib(5, 0, 4, 512),
            t.uib(5, 3, 4, 512),
            t.uib(5, 0, 4, 512, repeat=2),
            t.uib(5, 3, 4, 512),
            t.uib(5, 5, 4, 512),
            t.mqa(8, 64, 512),
            t.uib(5, 0, 4, 512),
            t.mqa(8, 64, 512),
            t.uib(5, 0, 4, 512),
            t.mqa(8, 64, 512),
            t.uib(5, 0, 4, 512),
            t.mqa(8, 64, 512),
            t.uib(5, 0, 4, 512),
        ),
        stage(t.conv(1, 960)),
    ]


def _v4(name: str, stages: list[Stage], stem: int, activation: str, norm_eps: float) -> NetworkSpec:
    return NetworkSpec(
        name=name,
        stem_channels=stem,
        stem_activation=activation,
        blocks=tuple(row for stage in stages for row in stage),
        # pool, then 1x1 conv to 1280 + BN + activation, then FC; neither this layer nor the stem narrows
        # below width 1.0 (timm's narrow V4s keep both)
        classifier=ClassifierSpec(
            hidden_channels=1280, pool_first=True, hidden_norm=True, activation=activation, dropout=0.2, min_width=1.0
        ),
        norm_eps=norm_eps,
        stages=tuple(len(stage) for stage in stages),
        stem_min_width=1.0,
        zero_init_residuals=True,
    )


@register_backbone("v4_conv_small")
def mobilenet_v4_conv_small(*, norm_eps: float = 1e-5) -> NetworkSpec:
    return _v4("v4_conv_small", _conv_small(), 32, "relu", norm_eps)


@register_backbone("v4_conv_medium")
def mobilenet_v4_conv_medium(*, norm_eps: float = 1e-5) -> NetworkSpec:
    return _v4("v4_conv_medium", _conv_medium(), 32, "relu", norm_eps)


@register_backbone("v4_conv_large")
def mobilenet_v4_conv_large(*, norm_eps: float = 1e-5) -> NetworkSpec:
    return _v4("v4_conv_large", _conv_large(), 24, "relu", norm_eps)


@register_backbone("v4_hybrid_medium")
def mobilenet_v4_hybrid_medium(*, norm_eps: float = 1e-5) -> NetworkSpec:
    return _v4("v4_hybrid_medium", _hybrid_medium(), 32, "relu", norm_eps)


@register_backbone("v4_hybrid_large")
def mobilenet_v4_hybrid_large(*, norm_eps: float = 1e-5) -> NetworkSpec:
    return _v4("v4_hybrid_large", _hybrid_large(), 24, "gelu", norm_eps)
