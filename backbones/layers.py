"""Small composable ops shared by every MobileNet: conv-norm-activation, squeeze-excitation, layer scale."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

# Channels-last activations and weights: oneDNN's depthwise and 1x1 kernels run faster on CPU in this layout, and it
# is the layout GPUs prefer under mixed precision.
MEMORY_FORMAT = torch.channels_last


class ChannelsLastGELU(nn.GELU):
    """Exact GELU that runs on the NHWC view of a channels-last map: aten's CPU GELU takes 1.5x as long on
    channels-last strides as on a contiguous tensor, and 10x on the tiny activations of a randomly initialised
    V4-Hybrid-Large (benchmarks/backbone_speed.py). Recorded for a runtime (traced for TorchScript and ONNX,
    torch.export, torch.compile) it is a plain GELU, so exported programs stay timm's; torch.fx (feature extractors)
    keeps the view, so an extractor returns what forward does."""

    def forward(self, x: Tensor) -> Tensor:
        if isinstance(x, torch.fx.Proxy) or (
            x.dim() == 4 and x.is_contiguous(memory_format=MEMORY_FORMAT) and not _recorded_for_a_runtime()
        ):
            return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return super().forward(x)


def _recorded_for_a_runtime() -> bool:
    return torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.compiler.is_exporting()


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "relu6": lambda: nn.ReLU6(inplace=True),
    "hardswish": lambda: nn.Hardswish(inplace=True),
    "hardsigmoid": nn.Hardsigmoid,
    "gelu": ChannelsLastGELU,  # V4-Hybrid-Large; exact (erf) GELU, as timm's
}


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to the nearest multiple of `divisor`, never dropping more than 10%.

    This is the TensorFlow/torchvision rule every MobileNet width multiplier goes through.
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def make_activation(name: str) -> nn.Module:
    """Build an activation module from its spec-table name."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class ConvNormAct(nn.Sequential):
    """Conv2d + BatchNorm2d (+ activation), padding derived from kernel and dilation.

    A plain Sequential: every mode runs conv, then norm, then activation, so hooks on each fire. For inference,
    `backbones.fuse.fuse(model)` folds the norm into the convolution as an explicit step.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        *,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        activation: str | None = "relu",
        norm_eps: float = 1e-5,
        norm_momentum: float = 0.1,
    ) -> None:
        padding = (kernel_size - 1) // 2 * dilation
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv=nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=padding,
                dilation=dilation,
                groups=groups,
                bias=False,
            ),
            norm=nn.BatchNorm2d(out_channels, eps=norm_eps, momentum=norm_momentum),
        )
        if activation is not None:
            layers["act"] = make_activation(activation)
        super().__init__(layers)
        self.out_channels = out_channels


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: channel gates from a global-pool bottleneck (hard-sigmoid in V3)."""

    def __init__(self, channels: int, reduced_channels: int, gate: str = "hardsigmoid") -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced_channels, 1)
        self.act = nn.ReLU(inplace=True)
        self.expand = nn.Conv2d(reduced_channels, channels, 1)
        self.gate = make_activation(gate)

    def forward(self, x: Tensor) -> Tensor:
        scale = F.adaptive_avg_pool2d(x, 1)  # faster than mean() on channels-last maps
        scale = self.gate(self.expand(self.act(self.reduce(scale))))
        return x * scale


class LayerScale(nn.Module):
    """A learned per-channel scale of a residual branch's output (V4-Hybrid, after CaiT), initialised small."""

    def __init__(self, channels: int, initial_value: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((channels,), initial_value))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma.view(1, -1, 1, 1)
