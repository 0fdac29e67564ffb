"""`fuse`: same outputs as the unfused eval model, no conv-bn pair left, the input model untouched."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torchvision
from torch import Tensor, nn

from backbones import create_backbone, create_classifier, list_backbones
from backbones.attention import MobileAttention
from backbones.fuse import conv_bn_pairs, fuse
from heads.ssdlite import SSDLite
from tasks.detect import build_detector
from tasks.segment import build_segmenter
from tests.helpers import randomize_norms, with_measured_statistics


class DetectorMaps(nn.Module):
    """A detector's raw per-anchor class logits and box codes, before decoding and NMS (which can reorder ties)."""

    def __init__(self, detector: SSDLite) -> None:
        super().__init__()
        self.backbone, self.head = detector.backbone, detector.head

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.head(self.backbone(x))


MODELS: dict[str, Callable[[], nn.Module]] = {
    **{f"backbone_{name}": lambda name=name: create_backbone(name, width=0.5) for name in list_backbones()},
    "classifier_v3_small": lambda: create_classifier("v3_small", 10, width=0.5),
    "classifier_v2": lambda: create_classifier("v2", 10, width=0.5),  # a ConvNormAct in the head too
    "segmenter_lraspp": lambda: build_segmenter("v3_small", "lraspp", 5, width=0.5),
    # torchvision's ASPP, ASPPPooling (a Sequential with its own forward) and FCN head blocks
    "segmenter_deeplabv3_aux": lambda: build_segmenter("v3_small", "deeplabv3", 5, width=0.5, aux_loss=True),
    "detector": lambda: DetectorMaps(build_detector("v3_small", 5, width=0.5)),
    "torchvision_mobilenet_v3_small": lambda: torchvision.models.mobilenet_v3_small(num_classes=10),
}


def outputs(model: nn.Module, x: Tensor) -> tuple[Tensor, ...]:
    with torch.no_grad():
        out = model(x)
    if isinstance(out, dict):
        return tuple(out.values())
    return (out,) if isinstance(out, Tensor) else tuple(out)


@pytest.mark.parametrize("name", list(MODELS))
def test_fused_model_equals_unfused(name):
    model = randomize_norms(MODELS[name]())
    pairs = conv_bn_pairs(model)
    norms = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    # every batch norm of these models follows a conv inside a Sequential, but the one that opens a Mobile MQA block:
    # it comes before its convolutions, and folding it forward into a zero-padded conv would change the borders
    attention_norms = sum(isinstance(m, MobileAttention) for m in model.modules())
    assert len(pairs) == norms - attention_norms > 10
    fused = fuse(model)
    assert conv_bn_pairs(fused) == []
    assert sum(isinstance(m, nn.BatchNorm2d) for m in fused.modules()) == attention_norms
    x = torch.randn(2, 3, 64, 64)
    expected, got = outputs(model, x), outputs(fused, x)
    assert len(expected) == len(got) > 0
    for want, have in zip(expected, got, strict=True):
        scale = float(want.abs().max())
        assert scale > 0
        torch.testing.assert_close(have, want, rtol=1e-5, atol=1e-5 * scale)


def assert_same_detections(have: dict[str, Tensor], want: dict[str, Tensor], image_size: int) -> None:
    """The same detections, paired one to one: each of `want`'s has exactly one of `have`'s with its label, its score
    to 1e-4 relative and its box to 1e-3 of the image size on every side. Detections are paired by content, not by
    place in the list: two near-equal scores may swap places."""
    assert len(have["scores"]) == len(want["scores"]) > 0
    same_label = want["labels"][:, None] == have["labels"][None, :]
    close_score = (want["scores"][:, None] - have["scores"][None, :]).abs() <= 1e-4 * want["scores"][:, None]
    close_box = torch.cdist(want["boxes"], have["boxes"], p=float("inf")) <= 1e-3 * image_size
    pairs = same_label & close_score & close_box
    unpaired = int((pairs.sum(1) != 1).sum()) + int((pairs.sum(0) != 1).sum())
    assert unpaired == 0, f"{unpaired} of {len(want['scores'])} detections are not paired one to one"


def test_fused_detector_gives_the_same_detections():
    """The whole eval forward (backbone, head, box decoding, NMS) of the fused detector on the same images gives the
    unfused detector's boxes, scores and labels."""
    detector = with_measured_statistics(
        randomize_norms(build_detector("v3_small", 5, width=0.5)), torch.rand(16, 3, 64, 64)
    )
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected, got = detector(images), fuse(detector)(images)
    assert len(got) == len(expected) == 2
    assert expected[0]["scores"][0] != expected[1]["scores"][0]  # detections that depend on the image
    for have, want in zip(got, expected, strict=True):
        assert set(have) == {"boxes", "scores", "labels"}
        assert_same_detections(have, want, 64)


def test_input_model_is_left_untouched():
    model = randomize_norms(create_classifier("v3_small", 10, width=0.5)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused = fuse(model)
    assert model.training and not fused.training
    assert len(conv_bn_pairs(model)) > 0
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_conv_norm_act_becomes_a_plain_sequential_with_the_fused_conv():
    model = randomize_norms(create_classifier("v3_small", 10, width=0.5))
    fused = fuse(model)
    stem = fused.backbone.stem
    assert type(stem) is nn.Sequential and list(stem._modules) == ["conv", "act"]
    assert stem.out_channels == model.backbone.stem.out_channels
    conv, norm = model.backbone.stem.conv, model.backbone.stem.norm
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    torch.testing.assert_close(stem.conv.weight, conv.weight * scale[:, None, None, None])
    torch.testing.assert_close(stem.conv.bias, norm.bias - norm.running_mean * scale)


def test_a_conv_norm_act_on_its_own_is_fused():
    block = randomize_norms(create_backbone("v3_small", width=0.5).stem)
    fused = fuse(block)
    assert type(fused) is nn.Sequential and list(fused._modules) == ["conv", "act"]
    x = torch.randn(1, 3, 16, 16)
    torch.testing.assert_close(fused(x), block(x), rtol=1e-5, atol=1e-5)


def test_norm_without_running_statistics_is_not_fused():
    block = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False), nn.ReLU())
    fused = fuse(block)
    assert isinstance(fused[1], nn.BatchNorm2d)
    assert conv_bn_pairs(fused) == ["1"]
