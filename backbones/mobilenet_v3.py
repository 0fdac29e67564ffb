"""MobileNetV3-Large and -Small (Howard et al. 2019, Tables 1 and 2), with the reduced-tail and minimal forms."""

from __future__ import annotations

from dataclasses import replace

from backbones.registry import register_backbone
from backbones.spec import BlockSpec, ClassifierSpec, NetworkSpec

RE, HS = "relu", "hardswish"


def bneck(kernel: int, exp_size: int, out: int, se: bool, nl: str, stride: int) -> BlockSpec:
    """A row in the paper's column order: kernel, exp size, #out, SE, NL, s."""
    return BlockSpec(out, kernel=kernel, stride=stride, expanded_channels=exp_size, squeeze_excite=se, activation=nl)


def conv1x1(out: int, nl: str) -> BlockSpec:
    return BlockSpec(out, kernel=1, activation=nl, kind="conv")


LARGE = (
    bneck(3, 16, 16, False, RE, 1),
    bneck(3, 64, 24, False, RE, 2),  # C1
    bneck(3, 72, 24, False, RE, 1),
    bneck(5, 72, 40, True, RE, 2),  # C2
    bneck(5, 120, 40, True, RE, 1),
    bneck(5, 120, 40, True, RE, 1),
    bneck(3, 240, 80, False, HS, 2),  # C3
    bneck(3, 200, 80, False, HS, 1),
    bneck(3, 184, 80, False, HS, 1),
    bneck(3, 184, 80, False, HS, 1),
    bneck(3, 480, 112, True, HS, 1),
    bneck(3, 672, 112, True, HS, 1),
    bneck(5, 672, 160, True, HS, 2),  # C4
    bneck(5, 960, 160, True, HS, 1),
    bneck(5, 960, 160, True, HS, 1),
    conv1x1(960, HS),
)

SMALL = (
    bneck(3, 16, 16, True, RE, 2),  # C1
    bneck(3, 72, 24, False, RE, 2),  # C2
    bneck(3, 88, 24, False, RE, 1),
    bneck(5, 96, 40, True, HS, 2),  # C3
    bneck(5, 240, 40, True, HS, 1),
    bneck(5, 240, 40, True, HS, 1),
    bneck(5, 120, 48, True, HS, 1),
    bneck(5, 144, 48, True, HS, 1),
    bneck(5, 288, 96, True, HS, 2),  # C4
    bneck(5, 576, 96, True, HS, 1),
    bneck(5, 576, 96, True, HS, 1),
    conv1x1(576, HS),
)


def reduce_tail(blocks: tuple[BlockSpec, ...]) -> tuple[BlockSpec, ...]:
    """Halve the channels after C4 (the V3 paper's detection/segmentation form, as torchvision does).

    The C4 block keeps its expansion, so the C4 expansion tap that SSDLite uses is unchanged.
    """
    c4 = max(i for i, block in enumerate(blocks) if block.stride == 2)
    tail = []
    for i, block in enumerate(blocks[c4:]):
        expanded = block.expanded_channels
        if i > 0 and expanded is not None:
            expanded //= 2
        tail.append(replace(block, out_channels=block.out_channels // 2, expanded_channels=expanded))
    return blocks[:c4] + tuple(tail)


def minimize(blocks: tuple[BlockSpec, ...]) -> tuple[BlockSpec, ...]:
    """The minimal form: no SE, no hard-swish, 3x3 kernels only (edge-accelerator friendly)."""
    return tuple(replace(block, kernel=min(block.kernel, 3), squeeze_excite=False, activation=RE) for block in blocks)


def _v3(name: str, table: tuple[BlockSpec, ...], head: int, reduced_tail: bool, minimal: bool, norm_eps: float):
    blocks = table
    if reduced_tail:
        blocks, head = reduce_tail(blocks), head // 2
    if minimal:
        blocks = minimize(blocks)
    activation = RE if minimal else HS
    return NetworkSpec(
        name=name,
        stem_channels=16,
        stem_activation=activation,
        blocks=blocks,
        # pool, then 1x1 (a linear layer) to 1280/1024 + hard-swish + dropout, then FC
        classifier=ClassifierSpec(hidden_channels=head, pool_first=True, activation=activation, dropout=0.2),
        norm_eps=norm_eps,
        norm_momentum=0.01,
        dilate_strided_block=True,  # torchvision's segmentation weights were trained with it
    )


@register_backbone("v3_large")
def mobilenet_v3_large(*, reduced_tail: bool = False, minimal: bool = False, norm_eps: float = 1e-3) -> NetworkSpec:
    return _v3("v3_large", LARGE, 1280, reduced_tail, minimal, norm_eps)


@register_backbone("v3_small")
def mobilenet_v3_small(*, reduced_tail: bool = False, minimal: bool = False, norm_eps: float = 1e-3) -> NetworkSpec:
    return _v3("v3_small", SMALL, 1024, reduced_tail, minimal, norm_eps)
