"""Spec tables: a MobileNet is data, one row per block, turned into modules by `builder.build_backbone`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class BlockSpec:
    """One row of a paper's table, at width 1.0.

    `expanded_channels` is the paper's absolute "exp size" (V3, scaled by the width multiplier);
    otherwise the expansion is `expansion` times the (already scaled) input channels (V1, V2).
    """

    out_channels: int
    kernel: int = 3
    stride: int = 1
    expansion: float = 1.0
    expanded_channels: int | None = None
    squeeze_excite: bool = False
    activation: str = "relu"
    project_activation: str | None = None  # V1's pointwise conv is activated; V2/V3 bottlenecks are linear
    residual: bool = True  # V1 has no shortcuts
    kind: Literal["inverted_residual", "conv"] = "inverted_residual"  # "conv": a plain 1x1 conv-norm-act


@dataclass(frozen=True)
class ClassifierSpec:
    """The paper's classification head after the last feature map.

    `hidden_channels` is the 1x1 widening layer (None: pool + FC only). `pool_first` puts it after the
    global pool (V3's efficient last stage, no norm) rather than before it (V2, with norm).
    """

    hidden_channels: int | None = None
    pool_first: bool = True
    activation: str = "relu"
    dropout: float = 0.0
    min_width: float = 0.0  # V2 never narrows its 1280-channel layer below width 1.0


@dataclass(frozen=True)
class NetworkSpec:
    """A whole MobileNet at width 1.0: stem, block rows, classifier head, normalisation settings."""

    name: str
    stem_channels: int
    stem_activation: str
    blocks: tuple[BlockSpec, ...]
    classifier: ClassifierSpec
    norm_eps: float = 1e-5
    norm_momentum: float = 0.1
