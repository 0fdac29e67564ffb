"""Batch-norm folding: same outputs as the unfolded plain graph, no conv-bn pair left, the input model untouched."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torchvision
from torch import Tensor, nn

from backbones import create_classifier
from deploy.export import DetectorOutputs
from deploy.folding import conv_bn_pairs, fold_batch_norms
from tasks.detect.model import build_detector
from tasks.segment.model import build_segmenter
from tests.conftest import randomize_norms

MODELS: dict[str, Callable[[], nn.Module]] = {
    "classifier_v3_small": lambda: create_classifier("v3_small", 10, width=0.5),
    "classifier_v2": lambda: create_classifier("v2", 10, width=0.5),  # a ConvNormAct in the head too
    "segmenter_lraspp": lambda: build_segmenter("v3_small", "lraspp", 5, width=0.5),
    # torchvision's ASPP, ASPPPooling (a Sequential with its own forward) and FCN head blocks
    "segmenter_deeplabv3_aux": lambda: build_segmenter("v3_small", "deeplabv3", 5, width=0.5, aux_loss=True),
    "detector": lambda: DetectorOutputs(build_detector("v3_small", 5, width=0.5, image_size=64).eval(), 64),
    "torchvision_mobilenet_v3_small": lambda: torchvision.models.mobilenet_v3_small(num_classes=10),
}


def plain_forward(model: nn.Module, x: Tensor) -> tuple[Tensor, ...]:
    """The unfolded reference: with autograd on, ConvNormAct runs conv then batch norm (no folding of its own)."""
    with torch.enable_grad():
        out = model(x)
    return tuple(t.detach() for t in ((out,) if isinstance(out, Tensor) else out))


@pytest.mark.parametrize("name", list(MODELS))
def test_folded_model_equals_unfolded(name):
    model = randomize_norms(MODELS[name]())
    pairs = conv_bn_pairs(model)
    norms = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert len(pairs) == norms > 10  # every batch norm of these models follows a conv inside a Sequential
    folded = fold_batch_norms(model)
    assert conv_bn_pairs(folded) == []
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(2, 3, 64, 64)
    expected = plain_forward(model, x)
    with torch.inference_mode():  # the folded model has no ConvNormAct left, so this runs its plain Sequentials
        got = folded(x)
    got = (got,) if isinstance(got, Tensor) else tuple(got)
    for want, have in zip(expected, got, strict=True):
        scale = float(want.abs().max())
        assert scale > 0
        torch.testing.assert_close(have, want, rtol=1e-5, atol=1e-5 * scale)


def test_input_model_is_left_untouched():
    model = randomize_norms(create_classifier("v3_small", 10, width=0.5)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_batch_norms(model)
    assert model.training and not folded.training
    assert len(conv_bn_pairs(model)) > 0
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_conv_norm_act_becomes_a_plain_sequential_with_the_fused_conv():
    model = randomize_norms(create_classifier("v3_small", 10, width=0.5))
    folded = fold_batch_norms(model)
    stem = folded.backbone.stem
    assert type(stem) is nn.Sequential and list(stem._modules) == ["conv", "act"]
    conv, norm = model.backbone.stem.conv, model.backbone.stem.norm
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    torch.testing.assert_close(stem.conv.weight, conv.weight * scale[:, None, None, None])
    torch.testing.assert_close(stem.conv.bias, norm.bias - norm.running_mean * scale)


def test_norm_without_running_statistics_is_not_folded():
    block = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False), nn.ReLU())
    folded = fold_batch_norms(block)
    assert isinstance(folded[1], nn.BatchNorm2d)
    assert conv_bn_pairs(folded) == ["1"]
