"""Fixtures of the deployment tests."""

from __future__ import annotations

import pytest
from torch import nn

from backbones import create_backbone
from backbones.classifier import ClassificationHead, MobileNetClassifier
from backbones.fuse import fuse
from tests.helpers import randomize_norms


@pytest.fixture
def small_v3() -> nn.Module:
    """V3-Small's blocks up to C3 (squeeze-excitation after ReLU and after hard-swish, a residual add, 3x3 and 5x5
    depthwise convolutions) with V3's head (pool, linear, hard-swish, linear), width 0.5, batch norm folded: every
    kind of op of a V3 classifier in a third of its layers, so that ExecuTorch's XNNPACK lowering takes seconds
    where the whole network takes 20-40 s on 2 busy cores."""
    backbone = create_backbone("v3_small", width=0.5, out_indices=("c3",))
    head = ClassificationHead(backbone.feature_info.channels()[-1], 10, hidden_channels=64, activation="hardswish")
    return fuse(randomize_norms(MobileNetClassifier(backbone, head)))
