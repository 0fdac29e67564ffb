"""Every task model on V4 exports, with the check `export` runs (the file, run by its runtime, against the folded
model): attention, layer scale and the UIB forms through each runtime, at a dynamic batch."""

from __future__ import annotations

import pytest
import torch

from backbones.fuse import fuse
from deploy.runtimes import get_runtime, list_runtimes
from tasks import get_model, get_task, list_models, model_entry
from tasks.common.export import check_export, network_compare
from tests.deploy.test_runtimes import runtime_marks
from tests.helpers import with_batch_statistics

# One V4 of each kind, conv and hybrid: the larger ones are the same blocks in longer tables (every V4 goes through
# onnxruntime and OpenVINO in tests/deploy/test_graphs.py). 14 exports of 2-8 s each: the slow tier's.
pytestmark = pytest.mark.slow
V4 = ["v4_conv_small", "v4_hybrid_medium"]
V4_MODELS = [name for name in list_models() if model_entry(name).arguments["backbone"] in V4]
SIZE = 96


def exportable_network(name: str) -> torch.nn.Module:
    """The folded network `export` writes for model `name` (width 0.5, 3 classes), its batch norms holding the
    statistics of random images, so that its outputs have a trained network's scale."""
    task = get_task(model_entry(name).task)
    network = task.exportable(get_model(name, num_classes=3, width=0.5).eval(), SIZE)
    return fuse(with_batch_statistics(network, torch.randn(4, 3, SIZE, SIZE)))


@pytest.mark.parametrize("name", V4_MODELS)
def test_every_v4_model_exports_to_onnx_and_passes_the_check(name, tmp_path):
    task = get_task(model_entry(name).task)
    network = exportable_network(name)
    path = tmp_path / "model.onnx"
    get_runtime("onnx").export(network, torch.randn(2, 3, SIZE, SIZE), path, task.outputs, True)
    batches = [torch.randn(1, 3, SIZE, SIZE), torch.randn(3, 3, SIZE, SIZE)]
    diffs, tolerance = check_export(path, "onnx", network, batches, task.outputs, network_compare(task.outputs))
    assert all(diffs[output] <= tolerance[output] for output in task.outputs)


@pytest.mark.parametrize(
    ("backbone", "name"),
    # OpenVINO runs both V4s against the model in tests/deploy/test_graphs.py; ExecuTorch lowers the hybrid's
    # attention block alone (tests/deploy/test_executorch.py), its whole network taking 40 s
    [
        pytest.param(backbone, name, marks=runtime_marks(name))
        for backbone in V4
        for name in list_runtimes()
        if name not in ("onnx", "openvino") and (backbone, name) != ("v4_hybrid_medium", "executorch")
    ],
)
@pytest.mark.usefixtures("runtime_packages_installed")  # skipped where the runtime's packages are absent, only
def test_every_v4_classifier_passes_every_runtimes_check(backbone, name, tmp_path):
    network = exportable_network(backbone)
    runtime = get_runtime(name)
    path = tmp_path / f"model{runtime.suffix}"
    runtime.export(network, torch.randn(2, 3, SIZE, SIZE), path, ("logits",), True, **runtime.prepare())
    batches = [torch.randn(1, 3, SIZE, SIZE), torch.randn(3, 3, SIZE, SIZE)]
    diffs, tolerance = check_export(path, name, network, batches, ("logits",), network_compare(("logits",)))
    assert diffs["logits"] <= tolerance["logits"]
