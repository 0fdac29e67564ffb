"""Any registered backbone + torchvision's FeaturePyramidNetwork, as a backbone for torchvision's detectors.

`mobilenet_fpn_backbone` plays the role of torchvision's `resnet_fpn_backbone` / `_mobilenet_extractor`: the
result has `out_channels` and returns an OrderedDict of equal-width maps, so `FasterRCNN`, `MaskRCNN`, `RetinaNet`
and `FCOS` take it as their `backbone`.

Default taps: the stage ends at strides 8, 16 and 32, plus torchvision's `LastLevelMaxPool` (stride 64), i.e.
four levels. torchvision's own MobileNetV3 FPN reads two stride-32 maps (the C4 block and the last conv), which
leaves small objects to a stride-32 grid; a stride-8 level restores them, while a stride-4 level (ResNet-FPN's P2)
would put the 256-channel FPN convs on the largest map and cost more than the mobile backbone itself.

The level count matters to the detector: torchvision's default anchor generators assume five levels (ResNet-FPN),
so pass an `AnchorGenerator` with one size tuple per level: `len(returned_taps)` plus the levels the extra block
adds (1 for `LastLevelMaxPool`, 2 for `LastLevelP6P7`). FasterRCNN's default RoI pooler reads maps "0".."3",
which are the tap names here.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

from torch import Tensor, nn
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, FeaturePyramidNetwork, LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

from backbones import MobileNetBackbone, create_backbone

DEFAULT_TAPS: tuple[int | str, ...] = (2, 3, 4)  # stage ends at strides 8, 16, 32
NUM_STAGES = 5  # stride-2, 4, 8, 16 and 32 stages; `trainable_layers` counts them from the deepest
TRAINABLE_WITH_WEIGHTS = 3  # torchvision's default for pretrained detection backbones


class MobileNetFPN(nn.Module):
    """`body` (our backbone) -> FPN; forward returns an OrderedDict "0".."n-1" per tap, then the extra levels."""

    def __init__(
        self,
        body: MobileNetBackbone,
        out_channels: int,
        extra_blocks: ExtraFPNBlock | None = None,
        norm_layer: Callable[..., nn.Module] | None = None,
    ) -> None:
        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(
            in_channels_list=body.feature_info.channels(),
            out_channels=out_channels,
            extra_blocks=LastLevelMaxPool() if extra_blocks is None else extra_blocks,
            norm_layer=norm_layer,
        )
        self.out_channels = out_channels  # what torchvision's detectors read

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        features = self.body(x)
        return self.fpn(OrderedDict((str(i), feature) for i, feature in enumerate(features)))


def mobilenet_fpn_backbone(
    name: str,
    *,
    width: float = 1.0,
    weights: str | Path | None = None,
    out_channels: int = 256,
    returned_taps: Sequence[int | str] = DEFAULT_TAPS,
    extra_blocks: ExtraFPNBlock | None = None,
    trainable_layers: int | None = None,
    frozen_norm: bool | None = None,
    norm_layer: Callable[..., nn.Module] | None = None,
) -> MobileNetFPN:
    """A registered backbone with an FPN on `returned_taps` (`create_backbone`'s `out_indices`).

    `weights`: a tag of `backbones.weights.list_weights(name)` ("imagenet"), a URL, or a local torchvision, timm
    or mobilenet-suite checkpoint. As in torchvision's detection builders,
    a loaded backbone by default keeps only its last `TRAINABLE_WITH_WEIGHTS` stages trainable and freezes its
    batch norms (detection batches are too small for their statistics); a random one trains everything with live
    batch norms. `trainable_layers` (0..5) and `frozen_norm` override these. `norm_layer` is the FPN's own norm.
    """
    if out_channels < 1:
        raise ValueError(f"out_channels must be at least 1, got {out_channels}")
    if trainable_layers is None:
        trainable_layers = NUM_STAGES if weights is None else TRAINABLE_WITH_WEIGHTS
    if not 0 <= trainable_layers <= NUM_STAGES:
        raise ValueError(f"trainable_layers must be in [0, {NUM_STAGES}], got {trainable_layers}")
    body = create_backbone(name, width=width, out_indices=returned_taps, weights=weights)
    if frozen_norm is None:
        frozen_norm = weights is not None
    if frozen_norm:
        body = freeze_batch_norms(body)
    freeze_stages(body, NUM_STAGES - trainable_layers)
    return MobileNetFPN(body, out_channels, extra_blocks=extra_blocks, norm_layer=norm_layer)


def freeze_stages(backbone: MobileNetBackbone, count: int) -> None:
    """Stop gradients in the first `count` stride stages (the stem opens the stride-2 stage)."""
    if count <= 0:
        return
    stride, modules = 2, [backbone.stem]
    for row, block in zip(backbone.spec.blocks, backbone.blocks, strict=True):
        stride *= row.stride  # the table's stride: a dilated block stays in the stage it was written in
        if int(math.log2(stride)) - 1 < count:
            modules.append(block)
    for module in modules:
        module.requires_grad_(False)


def freeze_batch_norms(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d by torchvision's FrozenBatchNorm2d holding the same statistics and affine terms."""
    if isinstance(module, nn.BatchNorm2d):
        frozen = FrozenBatchNorm2d(module.num_features, eps=module.eps)
        for key in ("weight", "bias", "running_mean", "running_var"):
            getattr(frozen, key).copy_(getattr(module, key).detach())
        return frozen
    for child_name, child in module.named_children():
        replacement = freeze_batch_norms(child)
        if replacement is not child:
            setattr(module, child_name, replacement)
    return module
