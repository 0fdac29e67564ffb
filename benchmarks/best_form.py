"""A peer in its best eager form, so that a ratio against it measures the network and not two public speed-ups.

Ours runs as predict and export run it: batch norm folded into the convolutions (`backbones.fuse.fuse`) and
channels-last. `best_inference_form` gives a peer both. `fuse` folds the Conv2d + BatchNorm2d pairs of Sequentials
(torchvision's `Conv2dNormActivation`, its MobileNetV2 projections and segmentation heads). timm keeps a block's conv
and norm as attributes (`conv_dw`, `bn1`, ... in its blocks, `conv`, `bn` in its `ConvNormAct`), where `fuse` does
not look; those pairs are found by where each norm's input comes from in one forward pass, and folded by the same
`fuse_conv_bn_eval`. timm's `BatchNormAct2d` carries its dropout and activation: its affine part folds into the conv,
and they stay. A norm that no conv feeds (the one that opens timm's Mobile MQA block) stays as it is.

A training step cannot fold a norm (it learns and normalises with batch statistics), so the best training form is
the peer in channels-last alone (`best_training_form`). Both take channels-last inputs (`channels_last`).
"""

from __future__ import annotations

import copy

import torch
from timm.layers import BatchNormAct2d
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from backbones.fuse import fusable, fuse

# |best form - as built| <= SAME_OUTPUTS * max|as built|: float32 summation order moves outputs by ~1e-6 of their
# scale; a norm folded into the wrong conv, or an activation dropped, moves them by far more
SAME_OUTPUTS = 1e-3


def best_inference_form(model: nn.Module, example: Tensor) -> nn.Module:
    """An eval-mode copy of `model` with every batch norm that a conv feeds folded into it, in channels-last.

    `example` (an input batch) runs once to find timm's pairs, and once more through both forms: a copy whose outputs
    differ from `model`'s by more than SAME_OUTPUTS of their scale is an error. `model` is left untouched."""
    best = fuse(model)
    for conv_name, norm_name in conv_fed_norms(best, example):
        conv, norm = best.get_submodule(conv_name), best.get_submodule(norm_name)
        if fusable(conv, norm):
            _replace(best, conv_name, fuse_conv_bn_eval(conv, norm))
            _replace(best, norm_name, _after_normalising(norm))
    best = best.to(memory_format=torch.channels_last)
    _check_same_outputs(copy.deepcopy(model).eval() if model.training else model, best, example)
    return best


def best_training_form(model: nn.Module) -> nn.Module:
    """A train-mode copy of `model` in channels-last; its norms stay, as they learn."""
    return copy.deepcopy(model).train().to(memory_format=torch.channels_last)


def channels_last(x: Tensor) -> Tensor:
    """`x` in the layout the best forms take."""
    return x.contiguous(memory_format=torch.channels_last)


def conv_fed_norms(model: nn.Module, example: Tensor) -> list[tuple[str, str]]:
    """(conv, norm) qualified names of every BatchNorm2d (subclasses included) whose input, running `example` through
    `model`, is the output of a Conv2d that feeds no other norm."""
    conv_of_output: dict[int, str] = {}
    outputs: list[Tensor] = []  # keeps the conv outputs alive, so that no later tensor takes one of their ids
    readers: dict[str, list[str]] = {}

    def after_conv(name: str):
        def hook(module: nn.Module, args: tuple, output: Tensor) -> None:
            conv_of_output[id(output)] = name
            outputs.append(output)

        return hook

    def before_norm(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            if id(args[0]) in conv_of_output:
                readers.setdefault(conv_of_output[id(args[0])], []).append(name)

        return hook

    handles = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(after_conv(name)))
        elif isinstance(module, nn.BatchNorm2d):
            handles.append(module.register_forward_pre_hook(before_norm(name)))
    try:
        with torch.inference_mode():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    return [(conv, norms[0]) for conv, norms in readers.items() if len(norms) == 1]


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    model.get_submodule(parent)._modules[child] = module


def _after_normalising(norm: nn.BatchNorm2d) -> nn.Module:
    """What a folded norm's forward still does: timm's BatchNormAct2d its dropout and activation, a BatchNorm2d
    nothing."""
    return nn.Sequential(norm.drop, norm.act) if isinstance(norm, BatchNormAct2d) else nn.Identity()


def _check_same_outputs(model: nn.Module, best: nn.Module, example: Tensor) -> None:
    with torch.inference_mode():
        expected, got = _tensors(model(example)), _tensors(best(channels_last(example)))
    for index, (want, have) in enumerate(zip(expected, got, strict=True)):
        difference, scale = float((have - want).abs().max()), float(want.abs().max())
        if difference > SAME_OUTPUTS * scale:
            raise ValueError(
                f"{type(model).__name__}: output {index} of the folded channels-last copy differs from the model's by "
                f"{difference:.3g}, more than {SAME_OUTPUTS:g} of its scale {scale:.3g}: a fold is wrong"
            )


def _tensors(output: object) -> list[Tensor]:
    """The tensors of a model's output (a tensor, or dicts, lists and tuples of them), in order."""
    if isinstance(output, Tensor):
        return [output]
    values = output.values() if isinstance(output, dict) else output
    return [tensor for value in values for tensor in _tensors(value)]
