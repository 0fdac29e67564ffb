"""Small composable ops shared by every MobileNet: conv-norm-activation and squeeze-excitation."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

# Channels-last activations and weights: oneDNN's depthwise and 1x1 kernels run 15-40% faster on CPU in this
# layout (benchmarks/backbone_speed.py measures it), and it is the layout GPUs prefer under mixed precision.
MEMORY_FORMAT = torch.channels_last

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "relu6": lambda: nn.ReLU6(inplace=True),
    "hardswish": lambda: nn.Hardswish(inplace=True),
    "hardsigmoid": nn.Hardsigmoid,
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

    In inference (eval mode, no autograd) the norm is folded into the convolution: one pass over the
    feature map instead of two. The folded weights are cached and rebuilt whenever a parameter or statistic
    changes (its version counter or storage moves) and on every `train()`/`eval()` switch, so training, loading,
    `.to()` and weight swaps stay correct.
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
        self._folded_key: tuple | None = None
        self._folded: tuple[Tensor, Tensor] | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            self._folded = None  # batch norm updates its running statistics without bumping their versions
            return super().forward(x)
        if torch.is_grad_enabled() or torch.jit.is_tracing() or torch.compiler.is_compiling():
            return super().forward(x)
        conv = self.conv
        weight, bias = self._folded_weights()
        x = F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
        return self.act(x) if "act" in self._modules else x

    def train(self, mode: bool = True) -> ConvNormAct:
        # Writes through `.data` (Lightning's weight averaging swaps weights that way) leave version counters
        # unchanged; every mode switch therefore rebuilds the cache, as such swaps come with one.
        self._folded_key, self._folded = None, None
        return super().train(mode)

    def __getstate__(self) -> dict:
        # copies and pickles (EMA, spawn, torch.save of a module) rebuild the cache instead of carrying it
        return {**self.__dict__, "_folded_key": None, "_folded": None}

    def _folded_weights(self) -> tuple[Tensor, Tensor]:
        conv, norm = self.conv, self.norm
        tensors = (conv.weight, norm.weight, norm.bias, norm.running_mean, norm.running_var)
        key = tuple((t.data_ptr(), t._version) for t in tensors) + (norm.eps,)
        if key != self._folded_key or self._folded is None:
            scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
            self._folded = (conv.weight * scale.reshape(-1, 1, 1, 1), norm.bias - norm.running_mean * scale)
            self._folded_key = key
        return self._folded


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
