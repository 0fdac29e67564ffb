"""V4-Hybrid's Mobile MQA block: batch norm -> multi-query attention -> [layer scale] (+ shortcut).

Multi-query attention: every head has its own query projection, all heads share one key and one value
projection. Keys and values are computed on a map downsampled by a strided depthwise conv (`kv_stride`),
which divides the attention's cost by `kv_stride`**2 (the paper's "spatial reduction").

The tensors take timm's shapes and steps (queries (N, heads, H*W, dim) against keys and values (N, 1, P, dim)
broadcast over the heads), so that an exported block is the same program as timm's: onnxruntime and OpenVINO then
recognise and fuse it the same way (`tests/deploy/test_graphs.py`).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torch.nn import functional as F

from backbones.layers import ConvNormAct, LayerScale


class MultiQueryAttention(nn.Module):
    def __init__(
        self,
        channels: int,
        out_channels: int,
        *,
        heads: int,
        key_dim: int,
        kv_stride: int = 1,
        kernel: int = 3,
        dilation: int = 1,
        norm_eps: float = 1e-5,
        norm_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        self.heads, self.key_dim = heads, key_dim
        self.query = nn.Conv2d(channels, heads * key_dim, 1, bias=False)
        self.key_down = self.value_down = None
        if kv_stride > 1:
            norm = {"norm_eps": norm_eps, "norm_momentum": norm_momentum}
            down = {"stride": kv_stride, "dilation": dilation, "groups": channels, "activation": None, **norm}
            self.key_down = ConvNormAct(channels, channels, kernel, **down)
            self.value_down = ConvNormAct(channels, channels, kernel, **down)
        self.key = nn.Conv2d(channels, key_dim, 1, bias=False)
        self.value = nn.Conv2d(channels, key_dim, 1, bias=False)
        self.output = nn.Conv2d(heads * key_dim, out_channels, 1, bias=False)
        self.init_projections()

    def init_projections(self) -> None:
        """Xavier-uniform projections, as timm: its hybrids train more steadily so than with kaiming."""
        for conv in (self.query, self.key, self.value, self.output):
            nn.init.xavier_uniform_(conv.weight)

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        heads, dim = self.heads, self.key_dim
        # (N, heads * dim, H, W) -> (N, heads, H * W, dim); keys and values (N, 1, P, dim), shared by the heads;
        # contiguous, as timm's: attention on strided inputs lowers to XNNPACK (ExecuTorch) as invalid views
        query = self.query(x).reshape(n, heads, dim, h * w).transpose(-1, -2).contiguous()
        key = self.key(x if self.key_down is None else self.key_down(x))
        value = self.value(x if self.value_down is None else self.value_down(x))
        key = key.reshape(n, dim, -1).transpose(1, 2).unsqueeze(1).contiguous()
        value = value.reshape(n, dim, -1).transpose(1, 2).unsqueeze(1).contiguous()
        out = F.scaled_dot_product_attention(query, key, value)  # (N, heads, H * W, dim)
        # head-major channels, in channels-last memory: (N, H * W, heads, dim) -> (N, H, W, heads * dim)
        out = out.transpose(1, 2).reshape(n, h, w, heads * dim).permute(0, 3, 1, 2)
        return self.output(out)


class MobileAttention(nn.Module):
    """`attention` takes `MultiQueryAttention`'s options (heads, key_dim, kv_stride, kernel, dilation)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        layer_scale: float | None = None,
        norm_eps: float = 1e-5,
        norm_momentum: float = 0.1,
        **attention: Any,
    ) -> None:
        super().__init__()
        norm = {"norm_eps": norm_eps, "norm_momentum": norm_momentum}
        self.norm = nn.BatchNorm2d(in_channels, eps=norm_eps, momentum=norm_momentum)
        self.attention = MultiQueryAttention(in_channels, out_channels, **attention, **norm)
        self.layer_scale = LayerScale(out_channels, layer_scale) if layer_scale is not None else None
        self.use_residual = in_channels == out_channels
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        out = self.attention(self.norm(x))
        if self.layer_scale is not None:
            out = self.layer_scale(out)
        return out + x if self.use_residual else out
