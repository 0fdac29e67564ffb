"""The one builder: any spec table -> a feature-extracting MobileNet backbone.

It alone applies the width multiplier, chains channels, turns strides past the requested output stride
into dilation, and records where the multi-scale taps are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from backbones.attention import MobileAttention, MultiQueryAttention
from backbones.blocks import InvertedResidual
from backbones.feature_info import FeatureInfo, FeatureTap
from backbones.layers import MEMORY_FORMAT, ConvNormAct, make_divisible
from backbones.spec import AttentionSpec, BlockSpec, NetworkSpec

OUTPUT_STRIDES = (8, 16, 32)
# "c1".."c4": outputs of the strided blocks that open the stride-4/8/16/32 stages (torchvision's C1..C4, which its
# segmentation models tap); "c4_expansion": the C4 block's expansion output (SSDLite's stride-16 input)
NAMED_TAPS = ("c1", "c2", "c3", "c4", "c4_expansion")


@dataclass(frozen=True)
class _Tap:
    """A tap location: the stem (block -1) or a block's output or expansion output."""

    block: int
    expansion: bool
    info: FeatureTap

    @property
    def order(self) -> tuple[int, int]:
        return (self.block, 0 if self.expansion else 1)


class MobileNetBackbone(nn.Module):
    """Stem + blocks; `forward(x)` returns the tapped feature maps ordered by stride."""

    def __init__(
        self,
        spec: NetworkSpec,
        width: float,
        output_stride: int,
        in_chans: int,
        stem: ConvNormAct,
        blocks: nn.Sequential,
        taps: Sequence[_Tap],
    ) -> None:
        super().__init__()
        self.spec, self.width, self.output_stride, self.in_chans = spec, width, output_stride, in_chans
        # the spec options it was built with (`create_backbone` sets them), which a task records in its checkpoints
        self.variant_options: dict[str, Any] = {}
        self.stem = stem
        self.blocks = blocks
        self.feature_info = FeatureInfo([tap.info for tap in taps])
        self._tap_stem = any(tap.block < 0 for tap in taps)
        self._output_taps = frozenset(tap.block for tap in taps if not tap.expansion and tap.block >= 0)
        self._expansion_taps = frozenset(tap.block for tap in taps if tap.expansion)
        self._last_block = max(tap.block for tap in taps)

    def forward(self, x: Tensor) -> list[Tensor]:
        # torch._assert, not raise: the check stays in FX graphs and torch.export programs instead of breaking them
        message = f"{self.spec.name} backbone expects a float tensor of shape (N, {self.in_chans}, H, W), got shape"
        torch._assert(x.dim() == 4, f"{message} {x.shape}")
        torch._assert(x.shape[1] == self.in_chans, f"{message} {x.shape}")
        x = self.stem(x.contiguous(memory_format=MEMORY_FORMAT))
        features = [x] if self._tap_stem else []
        for index, block in enumerate(self.blocks):
            if index > self._last_block:
                break
            if index in self._expansion_taps:
                x, expanded = block.forward_with_expansion(x)
                features.append(expanded)
            else:
                x = block(x)
            if index in self._output_taps:
                features.append(x)
        return features


def build_backbone(
    spec: NetworkSpec,
    *,
    width: float = 1.0,
    out_indices: Sequence[int | str] | None = None,
    output_stride: int = 32,
    in_chans: int = 3,
) -> MobileNetBackbone:
    """Build the backbone of `spec` at a width multiplier, output stride and input channel count.

    `out_indices` picks taps: integers index the stage ends at strides 2, 4, 8, 16, 32 (negative from the
    end); strings name extra taps (`NAMED_TAPS`). Default: all five stage ends.
    """
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}")
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride}")
    if in_chans < 1:
        raise ValueError(f"in_chans must be at least 1, got {in_chans}")
    norm = {"norm_eps": spec.norm_eps, "norm_momentum": spec.norm_momentum}

    channels = make_divisible(spec.stem_channels * max(spec.stem_min_width, width))
    stem = ConvNormAct(in_chans, channels, 3, stride=2, activation=spec.stem_activation, **norm)
    stride, dilation = 2, 1
    stage_ends = [_Tap(-1, False, FeatureTap("stem", channels, stride))]
    c4_expansion = None
    strided: list[_Tap] = []
    blocks: list[nn.Module] = []
    for index, row in enumerate(spec.blocks):
        in_stride, in_channels = stride, channels
        block_stride, block_dilation = row.stride, dilation
        if stride * row.stride > output_stride:
            dilation *= row.stride  # same weights, same receptive field, no further downsampling
            block_stride = 1
            if spec.dilate_strided_block:
                block_dilation = dilation
        stride *= block_stride
        channels = make_divisible(row.out_channels * width)
        block = _build_block(row, in_channels, channels, width, block_stride, block_dilation, norm)
        blocks.append(block)
        if row.stride > 1 and isinstance(block, InvertedResidual):
            # the last strided block's expansion; V1 has none, so its tap is that block's input
            where = f"blocks.{index}.expand" if block.expand is not None else f"blocks.{index - 1}"
            c4_expansion = _Tap(index, True, FeatureTap(where, block.expanded_channels, in_stride))
        output = _Tap(index, False, FeatureTap(f"blocks.{index}", channels, stride))
        if row.stride == 1:
            stage_ends.pop()  # the previous block did not end a stage
        else:
            strided.append(output)
        stage_ends.append(output)

    named = {f"c{k}": tap for k, tap in enumerate(strided, start=1)} | {"c4_expansion": c4_expansion}
    taps = _select_taps(spec.name, stage_ends, named, out_indices)
    model = MobileNetBackbone(spec, width, output_stride, in_chans, stem, nn.Sequential(*blocks), taps)
    init_weights(model)
    if spec.zero_init_residuals:
        zero_init_residual_branches(model)
    return model.to(memory_format=MEMORY_FORMAT)


def _build_block(
    row: BlockSpec | AttentionSpec,
    in_channels: int,
    out_channels: int,
    width: float,
    stride: int,
    dilation: int,
    norm: dict,
) -> nn.Module:
    if isinstance(row, AttentionSpec):
        return MobileAttention(
            in_channels,
            out_channels,
            heads=row.heads,
            key_dim=row.key_dim,
            kv_stride=row.kv_stride,
            kernel=row.kernel,
            dilation=dilation,
            layer_scale=row.layer_scale,
            **norm,
        )
    if row.kind == "conv":
        return ConvNormAct(
            in_channels, out_channels, row.kernel, stride=stride, dilation=dilation, activation=row.activation, **norm
        )
    if row.expanded_channels is not None:
        expanded = make_divisible(row.expanded_channels * width)
    else:
        expanded = int(round(in_channels * row.expansion))
    return InvertedResidual(
        in_channels,
        expanded,
        out_channels,
        kernel=row.kernel,
        start_kernel=row.start_kernel,
        expand_kernel=row.expand_kernel,
        stride=stride,
        dilation=dilation,
        activation=row.activation,
        squeeze_excite=row.squeeze_excite,
        project_activation=row.project_activation,
        residual=row.residual and row.stride == 1,  # a dilated stage keeps the strided block's missing shortcut
        layer_scale=row.layer_scale,
        **norm,
    )


def _select_taps(
    name: str, stage_ends: list[_Tap], named: dict[str, _Tap | None], out_indices: Sequence[int | str] | None
) -> list[_Tap]:
    if out_indices is None:
        return stage_ends
    if isinstance(out_indices, (int, str)) or len(out_indices) == 0:
        raise ValueError(f"out_indices must be a non-empty sequence, got {out_indices!r}")
    valid = f"integers in [-{len(stage_ends)}, {len(stage_ends) - 1}] or names {sorted(named)}"
    taps = []
    for index in out_indices:
        if isinstance(index, str):
            tap = named.get(index)
            if tap is None:
                raise ValueError(f"{name} has no tap {index!r}; valid out_indices: {valid}")
        elif isinstance(index, int) and -len(stage_ends) <= index < len(stage_ends):
            tap = stage_ends[index]
        else:
            raise ValueError(f"out_indices entry {index!r} is out of range for {name}; valid: {valid}")
        if tap in taps:
            raise ValueError(f"out_indices {list(out_indices)} selects the same tap twice")
        taps.append(tap)
    return sorted(taps, key=lambda tap: tap.order)


def init_weights(module: nn.Module) -> None:
    """torchvision's MobileNet initialisation; timm's for the attention projections."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
    for m in module.modules():
        if isinstance(m, MultiQueryAttention):
            m.init_projections()


def zero_init_residual_branches(module: nn.Module) -> None:
    """Every residual block without layer scale starts as the identity: its projection's batch-norm scale is zero
    (Goyal et al. 2017, timm's `zero_init_last`)."""
    for block in module.modules():
        if isinstance(block, InvertedResidual) and block.use_residual and block.layer_scale is None:
            nn.init.zeros_(block.project.norm.weight)


def set_norm_momentum(module: nn.Module, momentum: float) -> None:
    """Every batch norm's running-average momentum, e.g. 0.1 for short schedules (torchvision's V3 uses 0.01)."""
    for layer in module.modules():
        if isinstance(layer, nn.BatchNorm2d):
            layer.momentum = momentum
