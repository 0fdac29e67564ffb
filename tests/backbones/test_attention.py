"""The Mobile MQA block on its own against timm's (the fast tier's check of V4-Hybrid's attention; the whole hybrids
are compared with timm's in the slow tier): the same outputs from the same weights, key/value downsampling and
layer scale included."""

import pytest
import torch
from timm.models._efficientnet_blocks import MobileAttention as TimmMobileAttention

from backbones.attention import MobileAttention
from backbones.weights.keymaps import _timm_attention
from tests.helpers import assert_parity, randomize_norms


@pytest.mark.parametrize("kv_stride", [1, 2])
def test_mobile_attention_equals_timms(kv_stride):
    theirs = TimmMobileAttention(
        64, 64, num_heads=4, key_dim=16, value_dim=16, use_multi_query=True, kv_stride=kv_stride,
        dw_kernel_size=3, layer_scale_init_value=1e-5,
    )  # fmt: skip
    theirs = randomize_norms(theirs).eval()
    with torch.no_grad():
        theirs.layer_scale.gamma.uniform_(0.5, 1.5)  # a trained scale, not the initial 1e-5 that hides the branch
    ours = MobileAttention(64, 64, heads=4, key_dim=16, kv_stride=kv_stride, layer_scale=1e-5).eval()
    leaves = {theirs_leaf[2:]: ours_leaf[2:] for ours_leaf, theirs_leaf in _timm_attention("o", "t").items()}
    state = {}
    for key, value in theirs.state_dict().items():
        leaf, parameter = key.rsplit(".", 1)
        state[f"{leaves[leaf]}.{parameter}"] = value
    ours.load_state_dict(state, strict=True)
    x = torch.randn(2, 64, 14, 14).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = theirs(x) - x  # the attention branch alone: the shortcut would hide a difference in it
        assert_parity(ours(x) - x, expected)
