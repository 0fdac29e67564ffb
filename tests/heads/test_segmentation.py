"""DeepLabV3 and LR-ASPP on every backbone and output stride, and parity with torchvision's models."""

import pytest
import torch
import torchvision

from backbones import list_backbones
from tasks.segment.model import build_segmenter
from tests.helpers import assert_parity, randomize_norms

NUM_CLASSES = 4


@pytest.mark.parametrize("head, output_stride", [("lraspp", 16), ("deeplabv3", 16), ("deeplabv3", 8)])
@pytest.mark.parametrize("name", list_backbones())
def test_logits_at_input_size_on_every_backbone(name, head, output_stride):
    model = build_segmenter(
        name, head, NUM_CLASSES, width=0.5, output_stride=output_stride, aux_loss=head == "deeplabv3"
    )
    assert model.backbone.feature_info.reduction() == [8, output_stride]
    images = torch.randn(2, 3, 64, 80)
    outputs = model.train()(images)
    assert set(outputs) == ({"out", "aux"} if head == "deeplabv3" else {"out"})
    assert all(o.shape == (2, NUM_CLASSES, 64, 80) for o in outputs.values())
    sum(o.mean() for o in outputs.values()).backward()
    with torch.no_grad():
        assert model.eval()(images).shape == (2, NUM_CLASSES, 64, 80)


def test_bad_head_options_are_named():
    with pytest.raises(ValueError, match="unknown head 'fcn'; valid: lraspp, deeplabv3"):
        build_segmenter("v2", "fcn", 3)
    with pytest.raises(ValueError, match="aux_loss is an option of the deeplabv3 head"):
        build_segmenter("v2", "lraspp", 3, aux_loss=True)


@pytest.mark.parametrize(
    "arch, head, aux",
    [
        ("lraspp_mobilenet_v3_large", "lraspp", False),
        ("deeplabv3_mobilenet_v3_large", "deeplabv3", False),
        ("deeplabv3_mobilenet_v3_large", "deeplabv3", True),
    ],
)
def test_torchvision_checkpoints_give_the_same_logits(tmp_path, arch, head, aux):
    kwargs = {"aux_loss": aux} if head == "deeplabv3" else {}
    reference = randomize_norms(
        torchvision.models.get_model(arch, weights=None, weights_backbone=None, num_classes=21, **kwargs)
    )
    path = tmp_path / f"{arch}.pth"
    torch.save(reference.state_dict(), path)
    ours = build_segmenter("v3_large", head, 21, aux_loss=aux, weights=path).eval()
    images = torch.randn(1, 3, 160, 128)
    with torch.no_grad():
        expected, logits = reference(images)["out"], ours(images)
    assert expected.abs().max() > 0.01
    assert_parity(logits, expected)
    if aux:  # the FCN head on the stride-8 map, before upsampling
        with torch.no_grad():
            expected_aux = reference.aux_classifier(reference.backbone(images)["aux"])
            aux_logits = ours.head(ours.backbone(images))["aux"]
        assert_parity(aux_logits, expected_aux)
