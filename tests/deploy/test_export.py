"""Export of task checkpoints: ONNX / TorchScript files equal to the folded model, detections, and every bad input."""

from __future__ import annotations

import re
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from backbones.fuse import fuse
from deploy.runtimes import list_runtimes
from deploy.runtimes.onnx import MIN_OPSET, max_opset
from deploy.runtimes.torchscript import load_torchscript
from tasks.classify.task import main as classify_main
from tasks.common.export import (
    ExportCheckError,
    check_export,
    export_checkpoint,
    exportable_model,
    network_compare,
)
from tasks.common.task_checkpoint import load_task
from tasks.detect.exported import DetectorOutputs, detections_from_outputs
from tests.helpers import SIZE, tiny_task, write_checkpoint


@pytest.mark.parametrize("task", ["classify", "segment", "detect"])
def test_onnx_export_matches_the_folded_model(tmp_path, checkpoints, task):
    output = tmp_path / "model.onnx"
    kwargs = {"image_size": SIZE} if task == "segment" else {}
    result = export_checkpoint(
        task, checkpoints[task], "onnx", output=output, dynamic_batch=True, end_to_end=False, **kwargs
    )
    assert result.path == output and result.check_inputs.startswith("3 validation images")
    assert all(result.max_abs_diff[k] <= result.tolerance[k] for k in result.outputs)
    graph = onnx.load(str(output)).graph
    assert not any(node.op_type == "BatchNormalization" for node in graph.node)
    assert [i.name for i in graph.input] == ["images"] and [o.name for o in graph.output] == list(result.outputs)
    # an independent run at a third batch size, against the folded PyTorch model
    model = exportable_model(task, load_task(task, checkpoints[task]).module, SIZE)
    x = torch.randn(4, 3, SIZE, SIZE)
    got = ort.InferenceSession(str(output), providers=["CPUExecutionProvider"]).run(None, {"images": x.numpy()})
    with torch.inference_mode():
        want = model(x)
    want = (want,) if isinstance(want, torch.Tensor) else want
    for name, have, expected in zip(result.outputs, got, want, strict=True):
        assert have.shape == tuple(expected.shape)
        assert np.abs(have - expected.numpy()).max() <= result.tolerance[name]
    expected_shapes = {
        "classify": [(4, 8)],
        "segment": [(4, 5, SIZE, SIZE)],
        "detect": [(4, want[0].shape[1], 5), (4, want[0].shape[1], 4)],
    }
    assert [g.shape for g in got] == expected_shapes[task]


def test_fixed_batch_and_default_output_next_to_the_checkpoint(checkpoints, tmp_path):
    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(checkpoints["classify"].read_bytes())
    result = export_checkpoint("classify", ckpt, "onnx", batch_size=2)
    assert result.path == tmp_path / "last.onnx"
    dims = onnx.load(str(result.path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [2, 3, SIZE, SIZE]  # resolution from the checkpoint's hyper-parameters


def test_torchscript_export_matches(checkpoints, tmp_path):
    result = export_checkpoint("classify", checkpoints["classify"], "torchscript", output=tmp_path / "m.pt")
    assert result.max_abs_diff["probabilities"] <= 1e-6
    loaded = load_torchscript(result.path)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in loaded.modules())


def test_cli_exports_and_prints_the_check(checkpoints, tmp_path, capsys):
    output = tmp_path / "cli.onnx"
    result = classify_main(["export", "--ckpt_path", str(checkpoints["classify"]), "--output", str(output)])
    assert output.is_file() and result.path == output
    printed = capsys.readouterr().out
    assert f"exported classify to {output} (onnx, end-to-end" in printed and "difference probabilities" in printed


def test_detections_from_outputs_equal_the_detector(checkpoints):
    """Exported scores and boxes through `detections_from_outputs` give SSDLite's own eval detections."""
    detector = load_task("detect", checkpoints["detect"]).module.model
    detector.detection_postprocess.score_threshold = 0.05  # a few hundred detections: the matching stays quick
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.inference_mode():
        expected = detector(x)
        scores, boxes = DetectorOutputs(detector, SIZE)(x)
    got = detections_from_outputs(detector, scores, boxes)
    assert len(got) == 2 and sum(len(d["scores"]) for d in expected) > 10
    for have, want in zip(got, expected, strict=True):
        torch.testing.assert_close(have["scores"], want["scores"], rtol=1e-5, atol=1e-6)  # both sorted by score
        assert unmatched(have, want) == []


def unmatched(have: dict, want: dict) -> list[int]:
    """Indices of `want` detections with no `have` detection of the same label, score (1e-5) and box (1e-3 px).

    The caller checks the counts are equal. A one-to-one match rather than a positional comparison: detections of
    equal scores may come in either order.
    """
    free = list(range(len(have["scores"])))
    missing = []
    for i in range(len(want["scores"])):
        match = next(
            (
                j
                for j in free
                if have["labels"][j] == want["labels"][i]
                and abs(float(have["scores"][j] - want["scores"][i])) <= 1e-5
                and float((have["boxes"][j] - want["boxes"][i]).abs().max()) <= 1e-3
            ),
            None,
        )
        if match is None:
            missing.append(i)
        else:
            free.remove(match)
    return missing


def test_check_fails_on_a_different_model(checkpoints, tmp_path):
    path = export_checkpoint("classify", checkpoints["classify"], output=tmp_path / "m.onnx", end_to_end=False).path
    other = fuse(load_task("classify", checkpoints["classify"]).module.model)
    with torch.no_grad():
        other.head.fc.bias += 1e-3
    with pytest.raises(ExportCheckError, match=r"logits 0\.001 > 0\.0001"):
        check_export(path, "onnx", other, [torch.randn(1, 3, SIZE, SIZE)], ("logits",), network_compare(("logits",)))


# -- bad input ------------------------------------------------------------------------------------------------------
def test_checkpoint_of_another_task(checkpoints, tmp_path):
    with pytest.raises(ValueError, match=r"is a segment task checkpoint, not a classify one.*tasks\.segment export"):
        export_checkpoint("classify", checkpoints["segment"], output=tmp_path / "m.onnx")
    with pytest.raises(ValueError, match=r"is a classify task checkpoint, not a detect one"):
        export_checkpoint("detect", checkpoints["classify"], output=tmp_path / "m.onnx")


def test_not_a_task_checkpoint(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="not a task checkpoint"):
        export_checkpoint("classify", path)
    with pytest.raises(FileNotFoundError, match="missing.ckpt: no such file"):
        export_checkpoint("classify", tmp_path / "missing.ckpt")


def test_class_count_given_and_different(checkpoints, tmp_path):
    with pytest.raises(ValueError, match=r"--num_classes 10 does not match .* num_classes=8"):
        export_checkpoint("classify", checkpoints["classify"], output=tmp_path / "m.onnx", num_classes=10)
    result = export_checkpoint("classify", checkpoints["classify"], output=tmp_path / "m.onnx", num_classes=8)
    assert result.path.is_file()


def test_state_dict_that_disagrees_with_its_hyper_parameters(tmp_path):
    module, _ = tiny_task("classify", tmp_path / "cache")
    path = write_checkpoint(tmp_path / "edited.ckpt", module, None, num_classes=10, class_names=None)
    with pytest.raises(ValueError, match=r"does not fit its own hyper_parameters .*model\.head\.fc\.weight \[8, "):
        export_checkpoint("classify", path, output=tmp_path / "m.onnx")


@pytest.mark.parametrize("opset", [MIN_OPSET - 1, max_opset() + 1])
def test_unsupported_opset(checkpoints, tmp_path, opset):
    with pytest.raises(ValueError, match=rf"--opset {opset} is not supported; valid: {MIN_OPSET}\.\.{max_opset()}"):
        export_checkpoint("classify", checkpoints["classify"], output=tmp_path / "m.onnx", opset=opset)
    assert not (tmp_path / "m.onnx").exists()


def test_lowest_and_highest_valid_opsets_export(checkpoints, tmp_path):
    for opset in (MIN_OPSET, max_opset()):
        path = export_checkpoint("classify", checkpoints["classify"], output=tmp_path / f"{opset}.onnx", opset=opset)
        opsets = {o.domain: o.version for o in onnx.load(str(path.path)).opset_import}
        assert opsets[""] == opset


def test_missing_onnxruntime(checkpoints, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
    with pytest.raises(ImportError, match=r"pip install onnxruntime"):
        export_checkpoint("classify", checkpoints["classify"], output=tmp_path / "m.onnx")
    with pytest.raises(SystemExit) as exit_info:
        classify_main(["export", "--ckpt_path", str(checkpoints["classify"]), "--output", str(tmp_path / "m.onnx")])
    assert exit_info.value.code == 2
    assert "pip install onnxruntime" in capsys.readouterr().err
    # TorchScript needs no onnxruntime
    result = export_checkpoint("classify", checkpoints["classify"], "torchscript", output=tmp_path / "m.pt")
    assert result.path.is_file()


def test_unknown_format_and_random_check_images(checkpoints, tmp_path):
    valid = re.escape(str(list_runtimes()))  # onnx, torchscript and the optional runtimes, installed or not
    with pytest.raises(ValueError, match=rf"--format 'tflite' is not supported; valid: {valid}"):
        export_checkpoint("classify", checkpoints["classify"], "tflite")
    module, _ = tiny_task("classify", tmp_path / "cache")
    path = write_checkpoint(tmp_path / "no_data.ckpt", module, None)
    result = export_checkpoint("classify", path, output=tmp_path / "m.onnx")
    assert result.check_inputs.startswith("1 random normal images")
    assert result.max_abs_diff["probabilities"] <= result.tolerance["probabilities"]
