"""Traceability: `torch.fx`, torchvision's `create_feature_extractor` and `torch.export` on every backbone."""

from __future__ import annotations

import pytest
import torch
from torch.fx import symbolic_trace
from torchvision.models.feature_extraction import create_feature_extractor

from backbones import create_backbone, create_classifier, list_backbones
from backbones.fuse import fuse
from tests.helpers import randomize_norms


def assert_equal_lists(got, expected) -> None:
    assert len(got) == len(expected) > 0
    for have, want in zip(got, expected, strict=True):
        torch.testing.assert_close(have, want, rtol=0, atol=0)


@pytest.mark.parametrize("name", list_backbones())
def test_symbolic_trace_equals_eager(name):
    backbone = randomize_norms(create_backbone(name, width=0.5, out_indices=(1, "c4_expansion", -1)))
    x = torch.randn(2, 3, 64, 64)
    for model in (backbone, fuse(backbone)):
        traced = symbolic_trace(model)
        with torch.no_grad():
            assert_equal_lists(traced(x), model(x))


@pytest.mark.parametrize("name", list_backbones())
def test_feature_info_names_are_feature_extractor_nodes(name):
    """`feature_info.module_name()` picks, through torchvision's extractor, exactly what forward returns."""
    backbone = randomize_norms(create_backbone(name, width=0.5, out_indices=(0, 1, 2, "c4_expansion", 3, 4)))
    names = backbone.feature_info.module_name()  # V1's C4 expansion tap is the previous block's output
    extractor = create_feature_extractor(backbone, return_nodes=list(dict.fromkeys(names)))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        extracted = extractor(x)
        assert_equal_lists([extracted[name] for name in names], backbone(x))


def test_feature_extractor_on_an_inner_node():
    backbone = randomize_norms(create_backbone("v3_small", width=0.5))
    extractor = create_feature_extractor(backbone, return_nodes={"blocks.3.squeeze_excite.gate": "gate"})
    seen = []
    backbone.blocks[3].squeeze_excite.gate.register_forward_hook(lambda m, inputs, output: seen.append(output))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        gate = extractor(x)["gate"]
        backbone(x)
    assert gate.shape == (2, backbone.blocks[3].expanded_channels, 1, 1)
    torch.testing.assert_close(gate, seen[0], rtol=0, atol=0)


def test_traced_backbone_keeps_the_input_check():
    traced = symbolic_trace(create_backbone("v3_small", width=0.5))
    with pytest.raises(AssertionError, match=r"expects a float tensor of shape \(N, 3, H, W\)"):
        traced(torch.randn(1, 4, 64, 64))


def test_forward_hook_on_a_conv_fires_in_eval_no_grad():
    model = create_classifier("v2", 10, width=0.5).eval()
    shapes = []
    model.backbone.blocks[2].depthwise.conv.register_forward_hook(lambda m, inputs, output: shapes.append(output.shape))
    with torch.no_grad():
        model(torch.randn(2, 3, 64, 64))
    assert shapes == [torch.Size([2, model.backbone.blocks[2].expanded_channels, 16, 16])]  # stride 4


def test_torch_export_equals_eager():
    backbone = randomize_norms(create_backbone("v3_large", width=0.5))
    x = torch.randn(2, 3, 64, 64)
    program = torch.export.export(backbone, (x,))
    with torch.no_grad():
        assert_equal_lists(program.module()(x), backbone(x))
