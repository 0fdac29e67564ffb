"""The model and task registries: every backbone gets a model in every task, names are unique and found back from
their architecture arguments, weights entries name registered models, and `get_model` builds each one."""

from __future__ import annotations

from typing import get_args

import pytest
import torch

from backbones import list_backbones
from backbones.weights import list_weights
from tasks import get_model, get_task, list_models, list_tasks, model_entry, model_name
from tasks.segment.model import Head


def test_every_backbone_has_a_model_in_every_task():
    backbones = list_backbones()
    assert {model_name("classify", backbone=b) for b in backbones} == set(list_models("classify"))
    assert {model_name("detect", backbone=b) for b in backbones} == set(list_models("detect"))
    segmenters = {model_name("segment", head=h, backbone=b) for h in get_args(Head) for b in backbones}
    assert segmenters == set(list_models("segment"))
    assert sorted(list_models("classify") + list_models("detect") + list_models("segment")) == list_models()
    assert len(list_models()) == len(backbones) * (2 + len(get_args(Head)))


def test_names_are_torchvisions_and_read_back_to_their_arguments():
    assert model_name("detect", backbone="v3_large") == "ssdlite320_v3_large"
    assert model_name("segment", head="lraspp", backbone="v3_large") == "lraspp_v3_large"
    assert model_name("classify", backbone="v2") == "v2"
    entry = model_entry("deeplabv3_v2")
    assert (entry.task, dict(entry.arguments)) == ("segment", {"head": "deeplabv3", "backbone": "v2"})


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown model 'ssdlite_v9'; valid names: \[.*'ssdlite320_v3_large'"):
        get_model("ssdlite_v9")
    with pytest.raises(ValueError, match=r"no detect model with \{'backbone': 'v9'\}.*ssdlite320_v1"):
        model_name("detect", backbone="v9")
    with pytest.raises(ValueError, match=r"unknown task 'track'; valid: \['classify', 'detect', 'segment'\]"):
        get_task("track")


def test_every_weights_entry_names_a_registered_model():
    for entry in list_weights():
        assert entry.name in list_models(), f"weights {entry.name}:{entry.tag} name no registered model"


@pytest.mark.parametrize("name", list_models())
def test_get_model_builds_every_registered_model(name):
    entry = model_entry(name)
    model = get_model(name, num_classes=3, width=0.5).eval()
    size = 96
    with torch.no_grad():
        output = model(torch.rand(1, 3, size, size))
    if entry.task == "classify":
        assert output.shape == (1, 3)
    elif entry.task == "segment":
        assert output.shape == (1, 3, size, size)
    else:
        assert set(output[0]) == {"boxes", "scores", "labels"}
    assert model.backbone.spec.name == entry.arguments["backbone"]


def test_get_model_defaults_to_torchvisions_class_counts():
    assert get_model("v3_small", width=0.5).head.fc.out_features == 1000
    segmenter = get_model("lraspp_v3_small", width=0.5)
    assert {segmenter.head.get_submodule(layer).out_channels for layer in segmenter.head.class_layers} == {21}
    assert get_model("ssdlite320_v3_small", width=0.5).num_classes == 91


def test_tasks_register_their_classes():
    assert list_tasks() == ["classify", "detect", "segment"]
    for name in list_tasks():
        spec = get_task(name)
        assert spec.module.task == spec.predictor.task == name
        assert spec.outputs and spec.cli.max_epochs > 0
