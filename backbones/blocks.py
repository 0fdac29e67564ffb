"""The MobileNet block: expansion 1x1, depthwise kxk, optional squeeze-excitation, projection 1x1.

V1's depthwise-separable block is the same module with no expansion, an activated projection and no
shortcut; V2/V3 bottlenecks have a linear projection and a shortcut when shapes allow.
"""

from __future__ import annotations

from torch import Tensor, nn

from backbones.layers import ConvNormAct, SqueezeExcite, make_divisible

SE_RATIO = 0.25  # squeeze channels = make_divisible(expanded / 4), as in the V3 paper, torchvision and timm


class InvertedResidual(nn.Module):
    def __init__(
        self,
        in_channels: int,
        expanded_channels: int,
        out_channels: int,
        *,
        kernel: int = 3,
        stride: int = 1,
        dilation: int = 1,
        activation: str = "relu",
        squeeze_excite: bool = False,
        project_activation: str | None = None,
        residual: bool = True,
        norm_eps: float = 1e-5,
        norm_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        norm = {"norm_eps": norm_eps, "norm_momentum": norm_momentum}
        self.expand = (
            ConvNormAct(in_channels, expanded_channels, 1, activation=activation, **norm)
            if expanded_channels != in_channels
            else None
        )
        self.depthwise = ConvNormAct(
            expanded_channels,
            expanded_channels,
            kernel,
            stride=stride,
            dilation=dilation,
            groups=expanded_channels,
            activation=activation,
            **norm,
        )
        self.squeeze_excite = (
            SqueezeExcite(expanded_channels, make_divisible(expanded_channels * SE_RATIO)) if squeeze_excite else None
        )
        self.project = ConvNormAct(expanded_channels, out_channels, 1, activation=project_activation, **norm)
        self.use_residual = residual and stride == 1 and in_channels == out_channels
        self.expanded_channels = expanded_channels
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with_expansion(x)[0]

    def forward_with_expansion(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The block output and its expansion output (the input when there is no expansion conv)."""
        expanded = x if self.expand is None else self.expand(x)
        out = self.depthwise(expanded)
        if self.squeeze_excite is not None:
            out = self.squeeze_excite(out)
        out = self.project(out)
        if self.use_residual:
            out += x  # in place, as torchvision: the projection's BN output is not needed for backward
        return out, expanded
