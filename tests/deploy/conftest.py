"""Fixtures of the deployment tests."""

from __future__ import annotations

import importlib.util

import pytest
from torch import nn

from backbones import create_backbone
from backbones.classifier import ClassificationHead, MobileNetClassifier
from backbones.fuse import fuse
from tests.helpers import randomize_norms

# The top-level packages that each runtime's `prepare()` imports. A runtime test is skipped only where one of them is
# absent; an installed package whose import fails (a broken install, a missing dependency of its own) fails the
# test with the ImportError. A runtime not listed here is never skipped.
RUNTIME_PACKAGES: dict[str, tuple[str, ...]] = {
    "onnx": ("onnx", "onnxruntime"),
    "torchscript": (),
    "openvino": ("openvino", "onnx", "onnxruntime"),
    "executorch": ("executorch",),
    "litert": ("litert_torch", "ai_edge_litert"),
}


def missing_packages(*names: str) -> list[str]:
    """Those of `names` (top-level packages) that are not installed: no import is attempted."""
    return [name for name in names if importlib.util.find_spec(name) is None]


@pytest.fixture
def runtime_packages_installed(request: pytest.FixtureRequest) -> None:
    """Skips a test parametrised by runtime `name` where a package that runtime needs is not installed."""
    name = request.getfixturevalue("name")
    missing = missing_packages(*RUNTIME_PACKAGES.get(name, ()))
    if missing:
        pytest.skip(f"runtime {name!r} needs {missing}, which is not installed")


@pytest.fixture
def small_v3() -> nn.Module:
    """V3-Small's blocks up to C3 (squeeze-excitation after ReLU and after hard-swish, a residual add, 3x3 and 5x5
    depthwise convolutions) with V3's head (pool, linear, hard-swish, linear), width 0.5, batch norm folded: every
    kind of op of a V3 classifier in a third of its layers, so that ExecuTorch's XNNPACK lowering takes seconds
    where the whole network takes 20-40 s on 2 busy cores."""
    backbone = create_backbone("v3_small", width=0.5, out_indices=("c3",))
    head = ClassificationHead(backbone.feature_info.channels()[-1], 10, hidden_channels=64, activation="hardswish")
    return fuse(randomize_norms(MobileNetClassifier(backbone, head)))
