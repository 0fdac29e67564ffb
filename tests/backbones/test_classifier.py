import pytest
import torch
from torch import nn

from backbones import create_classifier, list_backbones
from backbones.classifier import ClassificationHead


@pytest.mark.parametrize("name", list_backbones())
def test_head_sizes_itself_from_feature_info(name):
    model = create_classifier(name, num_classes=7, width=0.5).eval()
    in_channels = model.backbone.feature_info.channels()[-1]
    head = model.head
    widening = [head.conv, head.pooled_conv, head.hidden]
    first = next((layer[0] for layer in widening if layer is not None), head.fc)
    assert (first.in_channels if isinstance(first, nn.Conv2d) else first.in_features) == in_channels
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 7)


@pytest.mark.parametrize(
    "name, width, conv, hidden",
    [
        ("v1", 1.0, None, None),
        ("v2", 1.0, 1280, None),
        ("v2", 0.5, 1280, None),  # V2 never narrows the 1280 layer
        ("v2", 1.4, 1792, None),
        ("v3_large", 1.0, None, 1280),
        ("v3_large", 0.75, None, 960),
        ("v3_small", 1.0, None, 1024),
        ("v4_conv_small", 0.5, None, 1280),  # V4 never narrows the 1280 layer
        ("v4_hybrid_large", 1.0, None, 1280),
    ],
)
def test_papers_heads(name, width, conv, hidden):
    head = create_classifier(name, width=width).head
    assert (head.conv.out_channels if head.conv is not None else None) == conv
    pooled = head.hidden[0].out_features if head.hidden is not None else None
    if head.pooled_conv is not None:
        pooled = head.pooled_conv.out_channels
    assert pooled == hidden


def test_dropout_default_and_override():
    assert create_classifier("v3_small").head.dropout.p == 0.2
    assert create_classifier("v1").head.dropout.p == 0.0
    assert create_classifier("v3_small", dropout=0.5).head.dropout.p == 0.5


def test_head_on_synthetic_features():
    head = ClassificationHead(40, 3, hidden_channels=64, pool_first=False, activation="relu6").eval()
    with torch.no_grad():
        assert head(torch.randn(2, 40, 5, 7)).shape == (2, 3)
