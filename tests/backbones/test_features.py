"""Registry-parametrised checks of the feature taps: what forward returns is what feature_info says."""

from dataclasses import replace

import pytest
import torch

from backbones import build_backbone, create_backbone, get_spec, list_backbones
from backbones.blocks import InvertedResidual
from backbones.spec import AttentionSpec
from tests.helpers import assert_parity, randomize_norms

SIZE = 96
WIDTHS = [0.35, 0.75, 1.0]


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", list_backbones())
def test_measured_strides_and_channels_equal_feature_info(name, width):
    backbone = create_backbone(name, width=width).eval()
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, SIZE, SIZE))
    assert backbone.feature_info.reduction() == [2, 4, 8, 16, 32]
    assert [f.shape[1] for f in features] == backbone.feature_info.channels()
    assert [SIZE // f.shape[-1] for f in features] == backbone.feature_info.reduction()
    assert all(c % 8 == 0 for c in backbone.feature_info.channels())


@pytest.mark.parametrize("name", list_backbones())
def test_out_indices_select_and_order_by_stride(name):
    full = create_backbone(name).eval()
    picked = create_backbone(name, out_indices=(4, 1)).eval()
    picked.load_state_dict(full.state_dict())
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        all_features, features = full(x), picked(x)
    assert picked.feature_info.reduction() == [4, 32]
    assert torch.equal(features[0], all_features[1]) and torch.equal(features[1], all_features[4])


@pytest.mark.parametrize("name, channels", [("v1", 512), ("v2", 576), ("v3_large", 672), ("v3_small", 288)])
def test_c4_expansion_tap(name, channels):
    backbone = create_backbone(name, out_indices=("c4_expansion", -1)).eval()
    with torch.no_grad():
        expansion, last = backbone(torch.randn(1, 3, SIZE, SIZE))
    assert backbone.feature_info.channels()[0] == channels == expansion.shape[1]
    assert backbone.feature_info.reduction() == [16, 32]
    assert expansion.shape[-1] == SIZE // 16 and last.shape[-1] == SIZE // 32


@pytest.mark.parametrize("output_stride", [8, 16])
@pytest.mark.parametrize("name", list_backbones())
def test_output_stride_dilates_with_the_same_weights(name, output_stride):
    reference = create_backbone(name)
    dilated = create_backbone(name, output_stride=output_stride).eval()
    dilated.load_state_dict(reference.state_dict())  # same parameter names and shapes
    with torch.no_grad():
        features = dilated(torch.randn(1, 3, SIZE, SIZE))
    expected = [min(r, output_stride) for r in [2, 4, 8, 16, 32]]
    assert dilated.feature_info.reduction() == expected
    assert [SIZE // f.shape[-1] for f in features] == expected


@pytest.mark.parametrize("in_chans", [1, 3, 4])
@pytest.mark.parametrize("name", list_backbones())
def test_in_chans(name, in_chans):
    backbone = create_backbone(name, in_chans=in_chans, width=0.5).eval()
    with torch.no_grad():
        features = backbone(torch.randn(2, in_chans, 64, 64))
    assert [f.shape[1] for f in features] == backbone.feature_info.channels()


@pytest.mark.parametrize("name", list_backbones())
def test_backward_gives_finite_gradients(name):
    backbone = create_backbone(name, width=0.5).train()
    features = backbone(torch.randn(2, 3, 64, 64))
    sum(f.square().mean() for f in features).backward()
    grads = [p.grad for p in backbone.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("shape", [(3, 64, 64), (1, 1, 3, 64, 64), (1, 4, 64, 64)])
def test_wrong_input_shape_is_a_clear_error(shape):
    backbone = create_backbone("v3_small")
    with pytest.raises(AssertionError, match=r"expects a float tensor of shape \(N, 3, H, W\), got shape"):
        backbone(torch.randn(*shape))


@pytest.mark.parametrize("resolution", [96, 128, 160, 224])
def test_resolution_multiplier(resolution):
    backbone = create_backbone("v1", width=0.25, out_indices=(-1,)).eval()
    with torch.no_grad():
        (last,) = backbone(torch.randn(1, 3, resolution, resolution))
    assert last.shape[-1] == resolution // 32


def local_only(name: str) -> bool:
    """No squeeze-excitation nor attention: each output pixel depends on a bounded window (V1, V2, V4-Conv)."""
    rows = get_spec(name).blocks
    return not any(isinstance(row, AttentionSpec) or row.squeeze_excite for row in rows)


@pytest.mark.parametrize("output_stride", [8, 16])
@pytest.mark.parametrize("name", [name for name in list_backbones() if local_only(name)])
def test_atrous_identity(name, output_stride):
    """The dilated network computes the undilated one's outputs, and more: sampled every 32 / output_stride pixels,
    its last map equals the undilated network's, for inputs divisible by 32. This holds only when every depthwise
    kernel of every dilated block, a UIB's start and middle ones included, has the right dilation."""
    reference = randomize_norms(create_backbone(name, width=0.5)).eval()
    dilated = create_backbone(name, width=0.5, output_stride=output_stride).eval()
    dilated.load_state_dict(reference.state_dict())
    x = torch.randn(2, 3, 128, 96)
    step = 32 // output_stride
    with torch.no_grad():
        expected, got = reference(x)[-1], dilated(x)[-1]
    assert got.shape[-2:] == (128 // output_stride, 96 // output_stride)
    assert_parity(got[..., ::step, ::step], expected)


def test_the_atrous_check_rejects_a_dilated_strided_block():
    """torchvision's V3 rule (the block that loses its stride takes the new dilation) breaks the identity above."""
    spec = replace(get_spec("v4_conv_small"), dilate_strided_block=True)
    reference = randomize_norms(build_backbone(spec, width=0.5)).eval()
    dilated = build_backbone(spec, width=0.5, output_stride=16).eval()
    dilated.load_state_dict(reference.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected, got = reference(x)[-1], dilated(x)[-1]
    with pytest.raises(AssertionError, match="not close"):
        assert_parity(got[..., ::2, ::2], expected)


def residual_norm_scales(name: str) -> list[float]:
    """The largest batch-norm scale of each residual block's projection, in a fresh backbone."""
    blocks = create_backbone(name).blocks
    residual = [b for b in blocks if isinstance(b, InvertedResidual) and b.use_residual and b.layer_scale is None]
    return [float(b.project.norm.weight.abs().max()) for b in residual]


def test_v4_residual_branches_start_at_zero_and_v1_to_v3_as_torchvision():
    assert residual_norm_scales("v4_conv_small") and set(residual_norm_scales("v4_conv_small")) == {0.0}
    assert residual_norm_scales("v4_hybrid_medium") == []  # every hybrid UIB starts near zero by its layer scale
    hybrid = create_backbone("v4_hybrid_medium").blocks
    scales = [b.layer_scale.gamma for b in hybrid if getattr(b, "layer_scale", None) is not None]
    assert len(scales) > 20 and all(torch.all(gamma == torch.tensor(1e-5)) for gamma in scales)
    assert set(residual_norm_scales("v3_large")) == {1.0}
    x = torch.randn(1, 3, 64, 64)
    backbone = create_backbone("v4_conv_small").eval()
    with torch.no_grad():  # a zero branch is the identity: the block returns its input
        features = backbone.stem(x)
        for block in backbone.blocks[:5]:
            features = block(features)
        assert backbone.blocks[5].use_residual and torch.equal(backbone.blocks[5](features), features)
