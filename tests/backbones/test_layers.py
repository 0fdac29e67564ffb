import pytest
import torch
from torch import nn
from torch.nn import functional as F

from backbones import create_classifier
from backbones.layers import ChannelsLastGELU, ConvNormAct, make_divisible
from tests.helpers import randomize_norms


@pytest.mark.parametrize(
    "value, expected", [(16 * 0.35, 8), (32 * 0.75, 24), (96 * 0.35, 32), (160 * 0.5, 80), (1280 * 1.4, 1792)]
)
def test_make_divisible_matches_torchvision(value, expected):
    from torchvision.models._utils import _make_divisible

    assert make_divisible(value) == expected == _make_divisible(value, 8)


def test_conv_norm_act_is_a_plain_conv_norm_act_sequence():
    layer = randomize_norms(ConvNormAct(8, 16, 3, stride=2, activation="hardswish"))
    assert type(layer).forward is nn.Sequential.forward and list(layer._modules) == ["conv", "norm", "act"]
    assert layer.out_channels == 16 and layer.conv.padding == (1, 1) and layer.conv.bias is None
    x = torch.randn(2, 8, 9, 9)
    expected = F.hardswish(layer.norm(layer.conv(x)))
    for context in (torch.enable_grad, torch.no_grad, torch.inference_mode):
        with context():
            torch.testing.assert_close(layer(x), expected, rtol=0, atol=0)


def test_no_activation_and_dilation_padding():
    layer = ConvNormAct(4, 4, 3, dilation=2, activation=None)
    assert list(layer._modules) == ["conv", "norm"] and layer.conv.padding == (2, 2)
    assert layer(torch.randn(1, 4, 7, 7)).shape == (1, 4, 7, 7)


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("context", [torch.enable_grad, torch.no_grad, torch.inference_mode])
def test_hooks_on_conv_and_norm_fire_in_every_mode(mode, context):
    model = create_classifier("v3_small", 10, width=0.5).train(mode == "train")
    calls = []
    for module in (model.backbone.stem.conv, model.backbone.stem.norm, model.backbone.blocks[1].project.norm):
        module.register_forward_hook(lambda m, inputs, output: calls.append(type(m)))
    with context():
        model(torch.randn(2, 3, 32, 32))
    assert calls == [nn.Conv2d, nn.BatchNorm2d, nn.BatchNorm2d]


def test_channels_last_gelu_is_gelu_eagerly_and_a_plain_gelu_when_recorded():
    x = torch.randn(2, 48, 7, 9).contiguous(memory_format=torch.channels_last)
    gelu = ChannelsLastGELU()
    out = gelu(x)
    assert torch.equal(out, F.gelu(x.contiguous()))  # the contiguous kernel's numbers, in the input's layout
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(gelu(x.contiguous()), F.gelu(x.contiguous()))
    traced = [node.kind() for node in torch.jit.trace(gelu, x).graph.nodes()]
    exported = [str(n.target) for n in torch.export.export(gelu, (x,)).graph.nodes if n.op == "call_function"]
    assert "aten::gelu" in traced and "aten::permute" not in traced
    assert exported == ["aten.gelu.default"]
