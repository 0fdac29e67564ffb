"""Our backbones + FPN inside torchvision's FasterRCNN, RetinaNet and FCOS: they build, train a step and predict."""

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops.feature_pyramid_network import LastLevelP6P7
from torchvision.ops.misc import FrozenBatchNorm2d

from backbones import list_backbones
from interop.torchvision_detection import MobileNetFPN, mobilenet_fpn_backbone
from tests.helpers import assert_parity, randomize_norms, save_state_dict

SIZE = 128
CHANNELS = 64  # FPN width: smaller than the default 256 keeps FasterRCNN's box head light
NUM_CLASSES = 3
LEVEL_STRIDES = (8, 16, 32, 64)  # the default taps plus LastLevelMaxPool
BACKBONES = [("v3_large", 1.0), ("v2", 0.5)]


def anchor_generator(detector: str) -> AnchorGenerator:
    """One size tuple per FPN level, four times the level's stride (one anchor per location for FCOS)."""
    if detector == "fcos":
        return AnchorGenerator(tuple((s,) for s in LEVEL_STRIDES), ((1.0,),) * len(LEVEL_STRIDES))
    sizes = tuple((4 * s,) for s in LEVEL_STRIDES)
    return AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(LEVEL_STRIDES))


def build_detector(detector: str, backbone: nn.Module) -> nn.Module:
    common = {"num_classes": NUM_CLASSES, "min_size": SIZE, "max_size": SIZE}
    if detector == "faster_rcnn":
        return FasterRCNN(backbone, rpn_anchor_generator=anchor_generator(detector), **common)
    if detector == "retinanet":
        return RetinaNet(backbone, anchor_generator=anchor_generator(detector), **common)
    return FCOS(backbone, anchor_generator=anchor_generator(detector), **common)


@pytest.mark.parametrize("detector", ["faster_rcnn", "retinanet", "fcos"])
@pytest.mark.parametrize("name, width", BACKBONES, ids=[name for name, _ in BACKBONES])
def test_detector_trains_a_step_and_predicts(name, width, detector):
    backbone = mobilenet_fpn_backbone(name, width=width, out_channels=CHANNELS)
    model = build_detector(detector, backbone).train()
    images = [torch.rand(3, SIZE, SIZE), torch.rand(3, SIZE, SIZE)]
    targets = [
        {"boxes": torch.tensor([[10.0, 20.0, 60.0, 90.0]]), "labels": torch.tensor([1])},
        {"boxes": torch.tensor([[30.0, 10.0, 100.0, 50.0], [5.0, 5.0, 40.0, 40.0]]), "labels": torch.tensor([2, 1])},
    ]
    losses = model(images, targets)
    assert len(losses) >= 2 and all(torch.isfinite(loss) for loss in losses.values())
    sum(losses.values()).backward()
    stem_grad = backbone.body.stem.conv.weight.grad
    assert stem_grad is not None and stem_grad.abs().sum() > 0

    model.eval()
    with torch.no_grad():
        predictions = model(images)
    assert len(predictions) == 2
    for prediction in predictions:
        assert set(prediction) == {"boxes", "labels", "scores"}
        assert prediction["boxes"].shape == (len(prediction["scores"]), 4)


@pytest.mark.parametrize("name", list_backbones())
def test_maps_have_out_channels_at_the_documented_strides(name):
    backbone = mobilenet_fpn_backbone(name, width=0.5, out_channels=CHANNELS).eval()
    with torch.no_grad():
        maps = backbone(torch.randn(1, 3, SIZE, SIZE))
    assert list(maps) == ["0", "1", "2", "pool"]
    assert [m.shape[1] for m in maps.values()] == [backbone.out_channels] * 4 == [CHANNELS] * 4
    assert tuple(SIZE // m.shape[-1] for m in maps.values()) == LEVEL_STRIDES


def test_named_taps_and_retinanet_extra_levels():
    backbone = mobilenet_fpn_backbone(
        "v3_small",
        width=0.5,
        out_channels=CHANNELS,
        returned_taps=("c3", "c4"),
        extra_blocks=LastLevelP6P7(CHANNELS, CHANNELS),  # equal widths: P6 reads the FPN's P5, as torchvision's v2
    )
    with torch.no_grad():
        maps = backbone.eval()(torch.randn(1, 3, SIZE, SIZE))
    assert list(maps) == ["0", "1", "p6", "p7"]
    assert [SIZE // m.shape[-1] for m in maps.values()] == [16, 32, 64, 128]


def test_checkpoint_loads_frozen_as_torchvision_does(tmp_path):
    reference = randomize_norms(torchvision.models.mobilenet_v3_large())
    path = save_state_dict(reference, tmp_path / "mobilenet_v3_large.pth")
    backbone = mobilenet_fpn_backbone("v3_large", weights=path)
    body = backbone.body
    assert isinstance(backbone, MobileNetFPN) and backbone.out_channels == 256
    assert not any(isinstance(m, nn.BatchNorm2d) for m in body.modules())
    assert any(isinstance(m, FrozenBatchNorm2d) for m in body.modules())
    # default with weights: the stride-8, 16 and 32 stages train; the stem and stride-4 stage are frozen
    assert not body.stem.conv.weight.requires_grad
    assert [all(p.requires_grad for p in block.parameters()) for block in body.blocks] == [False] * 3 + [True] * 13
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        ours = body.train()(x)[-1]  # frozen norms use the checkpoint's statistics even in training mode
        expected = reference.features(x)
    assert expected.abs().max() > 0.01
    assert_parity(ours, expected)


def test_trainable_layers_and_frozen_norm_options():
    frozen = mobilenet_fpn_backbone("v1", width=0.25, trainable_layers=0, frozen_norm=True)
    assert not any(p.requires_grad for p in frozen.body.parameters())
    assert all(p.requires_grad for p in frozen.fpn.parameters())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in frozen.body.modules())
    live = mobilenet_fpn_backbone("v1", width=0.25)
    assert all(p.requires_grad for p in live.body.parameters())
    assert any(isinstance(m, nn.BatchNorm2d) for m in live.body.modules())
    with pytest.raises(ValueError, match=r"trainable_layers must be in \[0, 5\], got 6"):
        mobilenet_fpn_backbone("v1", trainable_layers=6)
    with pytest.raises(ValueError, match="out_channels must be at least 1, got 0"):
        mobilenet_fpn_backbone("v1", out_channels=0)
    with pytest.raises(ValueError, match="unknown backbone 'v9'; valid names"):
        mobilenet_fpn_backbone("v9")
