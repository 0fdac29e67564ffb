"""The MobileNet block: [start depthwise] -> expansion -> [depthwise] -> [squeeze-excitation] -> projection ->
[layer scale] (+ shortcut).

V1's depthwise-separable block is this module with no expansion, an activated projection and no shortcut;
V2/V3 bottlenecks have a linear projection and a shortcut when shapes allow; V4's Universal Inverted Bottleneck
adds the optional start depthwise (no activation) and makes the middle one optional, and its fused IB expands
with a full kxk convolution instead of a depthwise.
"""

from __future__ import annotations

from torch import Tensor, nn

from backbones.layers import ConvNormAct, LayerScale, SqueezeExcite, make_divisible

SE_RATIO = 0.25  # squeeze channels = make_divisible(expanded / 4), as in the V3 paper, torchvision and timm


class InvertedResidual(nn.Module):
    def __init__(
        self,
        in_channels: int,
        expanded_channels: int,
        out_channels: int,
        *,
        kernel: int = 3,
        start_kernel: int = 0,
        expand_kernel: int = 1,
        stride: int = 1,
        dilation: int = 1,
        activation: str = "relu",
        squeeze_excite: bool = False,
        project_activation: str | None = None,
        residual: bool = True,
        layer_scale: float | None = None,
        norm_eps: float = 1e-5,
        norm_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        norm = {"norm_eps": norm_eps, "norm_momentum": norm_momentum}
        # the stride goes to the middle depthwise, else to the first spatial convolution (timm's UIB and fused IB)
        spatial = [
            name for name, k in (("start", start_kernel), ("expand", expand_kernel), ("depthwise", kernel)) if k > 1
        ]
        if stride > 1 and not spatial:
            raise ValueError("a strided block needs a spatial convolution (kernel, start_kernel or expand_kernel > 1)")
        strided = "depthwise" if kernel else (spatial[0] if spatial else None)

        def spatial_args(part: str) -> dict:
            return {"stride": stride if part == strided else 1, "dilation": dilation}

        self.start = (
            ConvNormAct(
                in_channels,
                in_channels,
                start_kernel,
                groups=in_channels,
                activation=None,
                **spatial_args("start"),
                **norm,
            )
            if start_kernel
            else None
        )
        self.expand = (
            ConvNormAct(
                in_channels, expanded_channels, expand_kernel, activation=activation, **spatial_args("expand"), **norm
            )
            if expanded_channels != in_channels or expand_kernel > 1
            else None
        )
        self.depthwise = (
            ConvNormAct(
                expanded_channels,
                expanded_channels,
                kernel,
                groups=expanded_channels,
                activation=activation,
                **spatial_args("depthwise"),
                **norm,
            )
            if kernel
            else None
        )
        self.squeeze_excite = (
            SqueezeExcite(expanded_channels, make_divisible(expanded_channels * SE_RATIO)) if squeeze_excite else None
        )
        self.project = ConvNormAct(expanded_channels, out_channels, 1, activation=project_activation, **norm)
        self.layer_scale = LayerScale(out_channels, layer_scale) if layer_scale is not None else None
        self.use_residual = residual and stride == 1 and in_channels == out_channels
        self.expanded_channels = expanded_channels
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        return self.after_expansion(self.expansion(x), x)

    def forward_with_expansion(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The block output and its expansion output (the input when there is no expansion conv), for a feature tap
        at the expansion (SSDLite's); `forward` does not keep the expansion to the end of the block."""
        expanded = self.expansion(x)
        return self.after_expansion(expanded, x), expanded

    def expansion(self, x: Tensor) -> Tensor:
        out = x if self.start is None else self.start(x)
        return out if self.expand is None else self.expand(out)

    def after_expansion(self, out: Tensor, x: Tensor) -> Tensor:
        # `out` is rebound at each step, so that each map is freed as soon as the next one exists, as in torchvision's
        # nn.Sequential blocks: holding the expansion to the block's end cost 1-3% of a forward at batch 8
        if self.depthwise is not None:
            out = self.depthwise(out)
        if self.squeeze_excite is not None:
            out = self.squeeze_excite(out)
        out = self.project(out)
        if self.layer_scale is not None:
            out = self.layer_scale(out)
        if self.use_residual:
            out += x  # in place, as torchvision: the projection's BN output is not needed for backward
        return out
