"""Fine-tuning from one of our Lightning checkpoints of a variant (here timm's V1: ReLU6, norm_eps 1e-5): a classifier
is built as the variant the file records, as from timm's own file; a task model built otherwise is one named error
with the flag to pass, never a silent load into a network that computes something else."""

from __future__ import annotations

import pytest
import torch

from backbones.weights.loaders import WeightsVariantError
from tasks.classify.model import build_classifier
from tasks.detect.model import build_detector
from tests.helpers import randomize_norms

TIMM_V1 = {"activation": "relu6", "norm_eps": 1e-5}


def lightning_file(path, model, backbone_options):
    """What a task's checkpoint holds: the network under `model.`, the options TaskModule recorded."""
    state = {f"model.{key}": value for key, value in model.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"backbone_options": backbone_options}}, path)
    return path


def test_a_classifier_fine_tuned_from_our_checkpoint_is_built_as_the_recorded_variant(tmp_path):
    source = randomize_norms(build_classifier("v1", 5, width=0.25, backbone_options=TIMM_V1)).eval()
    for norm in source.modules():
        if isinstance(norm, torch.nn.BatchNorm2d):
            norm.weight.data.mul_(20.0)  # activations well above 6, where ReLU6 and ReLU differ
    path = lightning_file(tmp_path / "timm_v1.ckpt", source, TIMM_V1)
    tuned = build_classifier("v1", 3, width=0.25, weights=str(path)).eval()
    assert tuned.backbone.variant_options == TIMM_V1
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(tuned.backbone(images), source.backbone(images))
        default = build_classifier("v1", 3, width=0.25).eval()
        default.backbone.load_state_dict(source.backbone.state_dict())
        assert not torch.allclose(default.backbone(images)[-1], source.backbone(images)[-1], atol=1e-3)


def test_a_detector_built_as_another_variant_than_recorded_names_the_flag(tmp_path):
    source = build_detector("v1", 3, width=0.25, backbone_options=TIMM_V1)
    path = lightning_file(tmp_path / "timm_v1_ssd.ckpt", source, TIMM_V1)
    with pytest.raises(WeightsVariantError) as raised:
        build_detector("v1", 5, width=0.25, weights=str(path))
    message = str(raised.value)
    assert f"{path} was trained with backbone options activation='relu6'; this model has activation='relu'" in message
    assert """--model.backbone_options '{"activation": "relu6", "norm_eps": 1e-05}'""" in message
    tuned = build_detector("v1", 5, width=0.25, weights=str(path), backbone_options=TIMM_V1)
    assert torch.equal(tuned.backbone.stem.conv.weight, source.backbone.stem.conv.weight)
