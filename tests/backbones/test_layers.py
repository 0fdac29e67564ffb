import pytest
import torch

from backbones import create_classifier
from backbones.layers import ConvNormAct, make_divisible
from tests.conftest import randomize_norms


@pytest.mark.parametrize(
    "value, expected", [(16 * 0.35, 8), (32 * 0.75, 24), (96 * 0.35, 32), (160 * 0.5, 80), (1280 * 1.4, 1792)]
)
def test_make_divisible_matches_torchvision(value, expected):
    from torchvision.models._utils import _make_divisible

    assert make_divisible(value) == expected == _make_divisible(value, 8)


def plain_and_folded(module, x):
    with torch.enable_grad():
        plain = module(x).detach()
    with torch.no_grad():
        folded = module(x)
    return plain, folded


def test_inference_folds_norm_into_conv_with_the_same_result():
    layer = randomize_norms(ConvNormAct(8, 16, 3, activation="hardswish"))
    plain, folded = plain_and_folded(layer, torch.randn(2, 8, 9, 9))
    assert torch.allclose(plain, folded, atol=1e-5)
    assert layer._folded is not None  # the fast path really ran


def test_folded_weights_follow_parameter_changes():
    layer = randomize_norms(ConvNormAct(4, 4, 1))
    x = torch.randn(1, 4, 5, 5)
    with torch.no_grad():
        before = layer(x)
        layer.norm.running_mean.add_(1.0)  # what a training step or load_state_dict does
        after = layer(x)
    plain, _ = plain_and_folded(layer, x)
    assert not torch.allclose(before, after)
    assert torch.allclose(after, plain, atol=1e-5)
    layer.double()  # storage moves: the cache is rebuilt in the new dtype
    with torch.no_grad():
        assert layer(x.double()).dtype == torch.float64


def test_whole_model_inference_equals_training_graph_path():
    model = randomize_norms(create_classifier("v3_small"))
    plain, folded = plain_and_folded(model, torch.randn(2, 3, 64, 64))
    assert (plain - folded).abs().max() <= 1e-4


def test_copies_do_not_carry_the_folded_cache():
    import copy

    layer = randomize_norms(ConvNormAct(4, 4, 1))
    with torch.inference_mode():
        layer(torch.randn(1, 4, 3, 3))
    assert layer._folded is not None and copy.deepcopy(layer)._folded is None


def test_training_forward_invalidates_the_folded_cache():
    """Batch norm updates its running statistics in place without bumping their version counters."""
    layer = randomize_norms(ConvNormAct(4, 4, 1))
    x = torch.randn(8, 4, 5, 5) * 3 + 1
    with torch.no_grad():
        before = layer.eval()(x)
        layer.train()(x)  # updates running_mean / running_var
        after = layer.eval()(x)
    plain, _ = plain_and_folded(layer, x)
    assert not torch.allclose(before, after)
    assert torch.allclose(after, plain, atol=1e-5)


def test_mode_switch_rebuilds_the_cache_after_writes_through_data():
    """Lightning's weight averaging swaps weights via `.data.copy_`, which leaves version counters unchanged."""
    layer = randomize_norms(ConvNormAct(4, 4, 1)).eval()
    x = torch.randn(1, 4, 5, 5)
    with torch.no_grad():
        layer(x)
        layer.conv.weight.data.copy_(torch.randn_like(layer.conv.weight))
        layer.train().eval()  # the swap comes with a mode switch
        after = layer(x)
    plain, _ = plain_and_folded(layer, x)
    assert torch.allclose(after, plain, atol=1e-5)
