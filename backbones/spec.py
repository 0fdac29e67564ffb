"""Spec tables: a MobileNet is data, one row per block, turned into modules by `builder.build_backbone`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class BlockSpec:
    """One row of a paper's table, at width 1.0: an inverted residual, in all the forms V1-V4 use.

    The block is [start depthwise] -> expansion -> [depthwise] -> [squeeze-excitation] -> projection ->
    [layer scale] (+ shortcut). `kernel` is the (middle) depthwise kernel, 0 for none; `start_kernel` is V4's
    optional depthwise before the expansion (no activation), so one row spells V4's Universal Inverted
    Bottleneck in each form: IB (start 0), ExtraDW (both), ConvNeXt-like (start only) and FFN (neither).
    `expand_kernel` 3 with `kernel` 0 is the fused IB: a full 3x3 expansion and no depthwise.
    `expanded_channels` is the paper's absolute "exp size" (V3, scaled by the width multiplier);
    otherwise the expansion is `expansion` times the (already scaled) input channels (V1, V2, V4).
    The stride sits on the middle depthwise, else on the first spatial convolution of the block.
    """

    out_channels: int
    kernel: int = 3
    stride: int = 1
    expansion: float = 1.0
    expanded_channels: int | None = None
    squeeze_excite: bool = False
    activation: str = "relu"
    project_activation: str | None = None  # V1's pointwise conv is activated; V2-V4 bottlenecks are linear
    residual: bool = True  # V1 has no shortcuts
    start_kernel: int = 0
    expand_kernel: int = 1
    layer_scale: float | None = None  # initial value of V4-Hybrid's per-channel output scale
    kind: Literal["inverted_residual", "conv"] = "inverted_residual"  # "conv": a plain conv-norm-act


@dataclass(frozen=True)
class AttentionSpec:
    """V4's Mobile MQA row: multi-query attention (`heads` query heads sharing one key and one value of
    `key_dim` channels), keys and values downsampled by a stride-`kv_stride` `kernel`x`kernel` depthwise conv."""

    out_channels: int
    heads: int
    key_dim: int
    kv_stride: int = 1
    kernel: int = 3
    layer_scale: float | None = None
    stride: int = 1  # attention never downsamples the feature map; the builder reads every row's stride


@dataclass(frozen=True)
class ClassifierSpec:
    """The paper's classification head after the last feature map.

    `hidden_channels` is the 1x1 widening layer (None: pool + FC only). `pool_first` puts it after the
    global pool (V3's and V4's efficient last stage) rather than before it (V2, with norm); `hidden_norm`
    gives the pooled layer a batch norm (V4) instead of a bias (V3).
    """

    hidden_channels: int | None = None
    pool_first: bool = True
    hidden_norm: bool = False
    activation: str = "relu"
    dropout: float = 0.0
    min_width: float = 0.0  # V2 never narrows its 1280-channel layer below width 1.0


@dataclass(frozen=True)
class NetworkSpec:
    """A whole MobileNet at width 1.0: stem, block rows, classifier head, normalisation settings.

    `stages`: rows per stage as the paper groups them (timm's module grouping); None: a new stage at each change
    of output channels, which is how V1-V3's tables group. `dilate_strided_block`: when a stride turns into
    dilation, the block that loses its stride takes the new dilation (torchvision's V3 segmentation
    backbones, whose weights were trained so) rather than its input's (the exact atrous algorithm).
    """

    name: str
    stem_channels: int
    stem_activation: str
    blocks: tuple[BlockSpec | AttentionSpec, ...]
    classifier: ClassifierSpec
    norm_eps: float = 1e-5
    norm_momentum: float = 0.1
    stages: tuple[int, ...] | None = None
    dilate_strided_block: bool = False
    stem_min_width: float = 0.0  # V4 (timm) never narrows its stem below width 1.0
    # V4: a residual branch without layer scale starts at zero (its projection's batch-norm scale), as the hybrids'
    # layer scale (1e-5) starts theirs; trained from scratch on a short schedule, V4-Conv learns faster so
    zero_init_residuals: bool = False

    def stage_positions(self) -> list[tuple[int, int]]:
        """(stage, index within the stage) of every row."""
        if self.stages is not None:
            return [(stage, index) for stage, length in enumerate(self.stages) for index in range(length)]
        positions, previous = [], None
        for row in self.blocks:
            stage, index = positions[-1] if positions else (-1, 0)
            positions.append((stage, index + 1) if row.out_channels == previous else (stage + 1, 0))
            previous = row.out_channels
        return positions
