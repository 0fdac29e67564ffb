"""The one batch-norm fold: an explicit inference step, like Ultralytics' `fuse()`.

Every Conv2d directly followed by a BatchNorm2d inside an `nn.Sequential` (our `ConvNormAct`, torchvision's
`Conv2dNormActivation`, its LR-ASPP / DeepLabV3 / FCN head blocks and MobileNetV2's projection) becomes one Conv2d
with a bias (`torch.nn.utils.fusion.fuse_conv_bn_eval`): one pass over the feature map instead of two. Predict,
export and the benchmarks run the fused copy; training and the modules' own forward never fold anything.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from backbones.layers import ConvNormAct


def fuse(model: nn.Module) -> nn.Module:
    """An eval-mode deep copy of `model` with every Sequential's Conv2d + BatchNorm2d pair fused into the Conv2d.

    In a generic Sequential the norm's slot keeps an `nn.Identity` (subclasses such as torchvision's ASPPPooling
    have their own forward and may rely on positions). A `ConvNormAct` becomes a plain `nn.Sequential(conv, act)`
    with the same state-dict names, as it no longer holds a norm. A norm without running statistics normalises
    with batch statistics and stays. The input model is left untouched.
    """
    fused = copy.deepcopy(model).eval()
    if isinstance(fused, ConvNormAct):
        _fuse_pairs(fused)
        return _plain_sequential(fused)
    _fuse_into(fused)
    return fused


def conv_bn_pairs(model: nn.Module) -> list[str]:
    """Qualified names of the BatchNorm2d modules that directly follow a Conv2d inside a Sequential."""
    names = []
    for prefix, module in model.named_modules():
        if isinstance(module, nn.Sequential):
            children = list(module.named_children())
            for (_, first), (name, second) in zip(children, children[1:], strict=False):
                if isinstance(first, nn.Conv2d) and isinstance(second, nn.BatchNorm2d):
                    names.append(f"{prefix}.{name}" if prefix else name)
    return names


def _fuse_into(module: nn.Module) -> None:
    for name, child in module.named_children():
        _fuse_into(child)
        if isinstance(child, ConvNormAct):
            module._modules[name] = _plain_sequential(child)
    if isinstance(module, nn.Sequential):
        _fuse_pairs(module)


def _fuse_pairs(sequential: nn.Sequential) -> None:
    children = list(sequential._modules.items())
    for (conv_name, conv), (norm_name, norm) in zip(children, children[1:], strict=False):
        if fusable(conv, norm):
            sequential._modules[conv_name] = fuse_conv_bn_eval(conv, norm)
            sequential._modules[norm_name] = nn.Identity()


def fusable(conv: nn.Module | None, norm: nn.Module | None) -> bool:
    """Whether `norm`, fed by `conv`, folds into it: a BatchNorm2d with running statistics over the conv's outputs."""
    return (
        isinstance(conv, nn.Conv2d)
        and isinstance(norm, nn.BatchNorm2d)
        and norm.running_mean is not None  # track_running_stats=False normalises with batch statistics
        and conv.out_channels == norm.num_features
    )


def _plain_sequential(block: ConvNormAct) -> nn.Sequential:
    """conv (+ act) of a ConvNormAct, its norm already fused into the conv; names kept for the state dict."""
    if isinstance(block.norm, nn.BatchNorm2d):  # not fusable (no running statistics): keep the module as it is
        return block
    plain = nn.Sequential(OrderedDict((k, v) for k, v in block._modules.items() if k != "norm"))
    plain.out_channels = block.out_channels
    return plain
