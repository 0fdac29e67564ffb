"""Fixtures of the deployment tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.ops import box_iou

from backbones import create_backbone
from backbones.classifier import ClassificationHead, MobileNetClassifier
from backbones.fuse import fuse
from tests.helpers import randomize_norms, tiny_task, write_checkpoint

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


def found_fraction(
    want: list[dict[str, torch.Tensor]], have: list[dict[str, torch.Tensor]], top: int, among: int, min_iou: float
) -> float:
    """The fraction of `want`'s `top` best detections of each image that `have` has among its own `among` best: the
    same label and a box with IoU >= `min_iou`."""
    found, total = 0, 0
    for mine, theirs in zip(want, have, strict=True):
        iou = box_iou(mine["boxes"][:top], theirs["boxes"][:among])
        same = mine["labels"][:top, None] == theirs["labels"][None, :among]
        found += int(((iou >= min_iou) & same).any(1).sum())
        total += len(mine["boxes"][:top])
    return found / total


# An int8 detector finds fp32's 20 best detections of an image, same label and IoU >= 0.8, among its own 40 best, on
# the tiny detector with measured batch-norm statistics, 12 images (val and train), calibrated on 6 train images.
# Measured for detectors initialised with seeds 0-7: onnxruntime 0.81-0.98 (0.975 for seed 0), OpenVINO/NNCF
# 0.80-0.94 (seeds 0-5); int8 calibrated on wrong ranges (all-zero images, images scaled by 0.1 or 10, shifted
# by +2) finds 0.11-0.55 of them in either. Near-equal scores of this random detector swap places under int8 noise,
# hence 40 candidates for 20 and a bound well below 1.
INT8_FOUND = 0.7


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


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """A tiny checkpoint of each task with its synthetic data module, written once per test module."""
    folder = tmp_path_factory.mktemp("checkpoints")
    paths = {}
    for task in ("classify", "segment", "detect"):
        module, data = tiny_task(task, folder / "cache")
        paths[task] = write_checkpoint(folder / f"{task}.ckpt", module, data)
    return paths
