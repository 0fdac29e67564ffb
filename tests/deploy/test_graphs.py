"""Exported V4 classifiers are the same programs as timm's: after each runtime's own graph optimisation, onnxruntime
(every V4) and OpenVINO (one of each kind, conv and hybrid) run the same operations, as many of each, on ours
(folded, built from timm's weights) as on timm's model. Attention included: the Mobile MQA block takes timm's tensor
shapes so that the runtimes fuse it alike."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import onnx
import onnxruntime
import pytest
import timm
import torch
from torch import nn

from backbones import create_classifier, list_backbones
from backbones.fuse import fuse
from deploy.runtimes.onnx import DEFAULT_OPSET, OnnxRuntime
from deploy.runtimes.openvino import OpenVinoModel, OpenVinoRuntime, compile_model
from tests.deploy.conftest import missing_packages
from tests.helpers import save_state_dict

V4 = [name for name in list_backbones() if name.startswith("v4_")]
SIZE = 128


def ours_and_timm(name: str, folder: Path) -> tuple[nn.Module, nn.Module]:
    reference = timm.create_model(f"mobilenet{name}", pretrained=False).eval()
    ours = create_classifier(name, weights=save_state_dict(reference, folder / "timm.pth")).eval()
    return fuse(ours), reference


def onnxruntime_operations(model: nn.Module, folder: Path) -> Counter[str]:
    """Operation counts of the graph onnxruntime runs: the ONNX export after all its CPU graph optimisations."""
    path, optimized = folder / "model.onnx", folder / "model.optimized.onnx"
    OnnxRuntime().export(model, torch.randn(1, 3, SIZE, SIZE), path, ("logits",), False, opset=DEFAULT_OPSET)
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(optimized)
    options.log_severity_level = 3  # the optimised file is this CPU's: that is what is compared
    onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return Counter(node.op_type for node in onnx.load(optimized).graph.node)


@pytest.mark.parametrize("name", V4)
def test_onnxruntime_runs_the_same_operations_as_on_timm(name, tmp_path):
    ours, reference = ours_and_timm(name, tmp_path)
    (tmp_path / "ours").mkdir(), (tmp_path / "timm").mkdir()
    mine, theirs = onnxruntime_operations(ours, tmp_path / "ours"), onnxruntime_operations(reference, tmp_path / "timm")
    assert mine["Conv"] > 40
    assert mine == theirs


@pytest.mark.own_process
@pytest.mark.slow
@pytest.mark.skipif(bool(missing_packages("openvino")), reason="openvino is not installed: pip install -e .[openvino]")
@pytest.mark.parametrize("name", ["v4_conv_small", "v4_hybrid_medium"])  # one of each kind: a process each, 20-40 s
def test_openvino_runs_the_same_operations_as_on_timm(name, tmp_path):
    counts = []
    for label, model in zip(("ours", "timm"), ours_and_timm(name, tmp_path), strict=True):
        path = tmp_path / f"{label}.openvino.xml"
        OpenVinoRuntime().export(model, torch.randn(1, 3, SIZE, SIZE), path, ("logits",), dynamic_batch=False)
        compiled = compile_model(path, threads=2)
        executed = compiled.get_runtime_model().get_ordered_ops()
        counts.append(Counter(op.get_rt_info()["layerType"].astype(str) for op in executed))
        if label == "ours":  # and the file computes the model (tests/deploy/test_v4_exports.py leaves OpenVINO here)
            images = torch.randn(1, 3, SIZE, SIZE)
            (got,) = OpenVinoModel(compiled).run(images)
            with torch.inference_mode():
                want = model(images)
            assert float((got - want).abs().max()) <= 1e-4 * max(1.0, float(want.abs().max()))
    assert counts[0]["Convolution"] > 40
    assert counts[0] == counts[1]
