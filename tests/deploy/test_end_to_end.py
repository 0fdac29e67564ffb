"""End-to-end exports: uint8 pixels in, the task's post-processing inside, metadata in the file; each file against
the PyTorch model it was exported from, and the detection file against the detector's own post-processing."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from deploy.metadata import KEY, decode, sidecar_path
from deploy.runtimes import get_runtime
from tasks.common.end_to_end import pixels
from tasks.common.export import export_checkpoint, exportable_model
from tasks.common.int8 import quantize_export
from tasks.common.task_checkpoint import load_task
from tasks.detect.end_to_end import compare_detections
from tasks.detect.exported import detections_from_outputs
from tasks.detect.task import main as detect_main
from tests.helpers import SIZE


def onnx_metadata(path: Path) -> dict:
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    return decode(props.get(KEY), path)


def random_pixels(count: int, height: int = SIZE, width: int = SIZE, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, 3, height, width), generator=generator, dtype=torch.uint8)


def normalise(images: torch.Tensor, datamodule) -> torch.Tensor:
    """What the data module's `A.Normalize` gives for these pixels."""
    mean, std = torch.tensor(datamodule.mean)[:, None, None], torch.tensor(datamodule.std)[:, None, None]
    return (images.float() / 255 - mean) / std


def run_onnx(path: Path, images: torch.Tensor) -> list[np.ndarray]:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": images.numpy()})


def test_detector_file_is_one_program_with_one_nms(checkpoints, tmp_path):
    result = export_checkpoint("detect", checkpoints["detect"], output=tmp_path / "d.onnx", dynamic_batch=True)
    assert result.end_to_end and result.outputs == ("detections", "num_detections")
    graph = onnx.load(str(result.path)).graph
    ops = collections.Counter(node.op_type for node in graph.node)
    # torchvision's export has a TopK and two NonZero per class; this file: the boxes passing the threshold, the
    # candidates, one NMS for every (image, class), the order and the ranks within their image
    assert ops["NonMaxSuppression"] == 1 and ops["TopK"] == 2 and ops["NonZero"] == 2 and ops["Loop"] == 0
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    metadata = onnx_metadata(result.path)
    assert metadata["task"] == "detect" and metadata["model"] == "ssdlite320_v3_small"
    assert (
        metadata["input"] | {"size": [SIZE, SIZE], "resize": "stretch", "dtype": "uint8", "batch": "dynamic"}
        == (metadata["input"])
    )
    assert metadata["class_names"] == load_task("detect", checkpoints["detect"]).module.class_names
    assert metadata["category_ids"] == list(range(len(metadata["class_names"])))  # synthetic: ids are the labels
    assert metadata["postprocess"] == {
        "nms": "inside",
        "score_threshold": 0.001,
        "iou_threshold": 0.55,
        "candidates_per_class": 300,
        "max_detections": 300,
    }


def test_detector_file_gives_the_detectors_detections(checkpoints, tmp_path):
    """On random pixels at a batch the export never saw, the file's detections are the PyTorch detector's own
    (its eval forward on the normalised images), as sets: labels, scores within 1e-4, boxes within 1e-4 of the side."""
    result = export_checkpoint("detect", checkpoints["detect"], output=tmp_path / "d.onnx", dynamic_batch=True)
    checkpoint = load_task("detect", checkpoints["detect"])
    datamodule = checkpoint.datamodule()
    images = random_pixels(4)
    normalised = normalise(images, datamodule)
    with torch.inference_mode():
        expected = checkpoint.module.model.eval()(normalised)
    counts = torch.tensor([len(d["scores"]) for d in expected])
    rows = torch.zeros(4, 300, 6)
    for index, found in enumerate(expected):
        count = len(found["scores"])
        rows[index, :count] = torch.cat([found["boxes"], found["scores"][:, None], found["labels"][:, None]], 1)
    got = [torch.from_numpy(a) for a in run_onnx(result.path, images)]
    assert int(counts.min()) > 10
    diffs, tolerances = compare_detections(got, [rows, counts], SIZE)
    assert diffs == {"detections": 0.0, "num_detections": 0.0}, diffs


def test_export_thresholds_are_the_files(checkpoints, tmp_path, capsys):
    output = tmp_path / "d.onnx"
    flags = ["--score_threshold", "0.2", "--max_detections", "7", "--iou_threshold", "0.4", "--dynamic_batch"]
    detect_main(["export", "--ckpt_path", str(checkpoints["detect"]), "--output", str(output), *flags])
    assert "end-to-end" in capsys.readouterr().out
    detections, counts = run_onnx(output, random_pixels(2))
    assert detections.shape == (2, 7, 6)
    for rows, count in zip(detections, counts, strict=True):
        assert (rows[:count, 4] > 0.2).all() and (rows[count:] == 0).all()
    assert (
        onnx_metadata(output)["postprocess"] | {"score_threshold": 0.2, "max_detections": 7}
        == (onnx_metadata(output)["postprocess"])
    )


def test_network_only_file_keeps_its_outputs(checkpoints, tmp_path):
    output = tmp_path / "n.onnx"
    result = detect_main(
        ["export", "--ckpt_path", str(checkpoints["detect"]), "--output", str(output), "--end_to_end", "false"]
    )
    assert result.outputs == ("scores", "boxes") and not result.end_to_end
    model = onnx.load(str(output))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert not any(p.key == KEY for p in model.metadata_props)
    with pytest.raises(SystemExit):  # thresholds belong to end-to-end files
        detect_main(
            ["export", "--ckpt_path", str(checkpoints["detect"]), "--end_to_end", "false", "--max_detections", "5"]
        )


def test_segmenter_file_takes_any_size_and_gives_the_mask(checkpoints, tmp_path):
    result = export_checkpoint(
        "segment", checkpoints["segment"], output=tmp_path / "s.onnx", image_size=SIZE, dynamic_batch=True
    )
    assert result.outputs == ("mask",) and result.any_size
    metadata = onnx_metadata(result.path)
    assert metadata["input"]["size"] is None and metadata["input"]["resize"] == "none"
    checkpoint = load_task("segment", checkpoints["segment"])
    network = exportable_model("segment", checkpoint.module, SIZE)
    datamodule = checkpoint.datamodule()
    images = random_pixels(2, 48, 80)  # not the traced size, not square
    (mask,) = run_onnx(result.path, images)
    normalised = normalise(images, datamodule)
    with torch.inference_mode():
        expected = network(normalised).argmax(1)
    assert mask.shape == (2, 48, 80) and mask.dtype == np.int64
    assert (torch.from_numpy(mask) == expected).double().mean() >= 0.999


def test_segmenter_file_with_logits(checkpoints, tmp_path):
    result = export_checkpoint(
        "segment", checkpoints["segment"], output=tmp_path / "s.onnx", image_size=SIZE, task_options={"logits": True}
    )
    mask, logits = run_onnx(result.path, random_pixels(1))
    assert result.outputs == ("mask", "logits") and logits.shape == (1, 5, SIZE, SIZE)
    assert (logits.argmax(1) == mask).all()


def test_classifier_file_gives_probabilities(checkpoints, tmp_path):
    result = export_checkpoint("classify", checkpoints["classify"], output=tmp_path / "c.onnx", dynamic_batch=True)
    metadata = onnx_metadata(result.path)
    assert metadata["input"]["resize"] == "shorter_side_crop" and metadata["input"]["resize_side"] == int(SIZE / 0.875)
    checkpoint = load_task("classify", checkpoints["classify"])
    network = exportable_model("classify", checkpoint.module, SIZE)
    datamodule = checkpoint.datamodule()
    images = random_pixels(3)
    (probabilities,) = run_onnx(result.path, images)
    normalised = normalise(images, datamodule)
    with torch.inference_mode():
        expected = network(normalised).softmax(1)
    np.testing.assert_allclose(probabilities, expected.numpy(), atol=1e-5)
    np.testing.assert_allclose(probabilities.sum(1), 1, atol=1e-5)


def test_pixels_invert_the_normalisation():
    images = random_pixels(2)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    normalised = (images.float() / 255 - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    assert torch.equal(pixels(normalised, mean, std), images)
    assert not torch.equal(pixels(normalised + 0.02, mean, std), images)


def test_torchscript_detector_takes_any_batch(checkpoints, tmp_path):
    result = export_checkpoint("detect", checkpoints["detect"], "torchscript", output=tmp_path / "d.pt")
    loaded = get_runtime("torchscript").load(result.path)
    metadata = decode(sidecar_path(result.path).read_text(), result.path)
    assert metadata["postprocess"]["nms"] == "inside"
    single = [loaded.run(random_pixels(1, seed=s)) for s in range(3)]
    rows, counts = loaded.run(torch.cat([random_pixels(1, seed=s) for s in range(3)]))
    assert int(counts.min()) > 0
    for index, alone in enumerate(single):  # as sets: rows of equal scores may come in either order
        diffs, _ = compare_detections([rows[index : index + 1], counts[index : index + 1]], alone, SIZE)
        assert diffs == {"detections": 0.0, "num_detections": 0.0}


def test_detections_from_network_outputs_equal_the_end_to_end_file(checkpoints, tmp_path):
    """The network-only file plus the detector's post-processing in Python, and the end-to-end file, agree."""
    network = export_checkpoint("detect", checkpoints["detect"], output=tmp_path / "n.onnx", end_to_end=False)
    full = export_checkpoint("detect", checkpoints["detect"], output=tmp_path / "e.onnx")
    checkpoint = load_task("detect", checkpoints["detect"])
    datamodule = checkpoint.datamodule()
    images = random_pixels(1, seed=3)
    normalised = normalise(images, datamodule)
    scores, boxes = run_onnx(network.path, normalised)
    (python,) = detections_from_outputs(checkpoint.module.model, torch.from_numpy(scores), torch.from_numpy(boxes))
    rows, counts = (torch.from_numpy(a) for a in run_onnx(full.path, images))
    want = torch.zeros(1, 300, 6)
    want[0, : len(python["scores"])] = torch.cat(
        [python["boxes"], python["scores"][:, None], python["labels"][:, None].float()], 1
    )
    diffs, _ = compare_detections([rows, counts], [want, torch.tensor([len(python["scores"])])], SIZE)
    assert diffs == {"detections": 0.0, "num_detections": 0.0}


def int8_rows_are_exact(rows: np.ndarray, counts: np.ndarray, classes: int) -> None:
    """Rows an int8 file wrote: float scores in (0, 1], whole class indices, zero padding (no 8-bit grid on them)."""
    for image, count in zip(rows, counts, strict=True):
        found = image[:count]
        assert ((found[:, 4] > 0) & (found[:, 4] <= 1)).all() and (image[count:] == 0).all()
        assert np.array_equal(found[:, 5], np.round(found[:, 5])) and set(found[:, 5]) <= set(range(1, classes))


# NNCF: 30-80 s; OpenVINO's threads would crash a later fork of the test process
IN_OPENVINO = pytest.param("openvino", marks=[pytest.mark.slow, pytest.mark.own_process])


@pytest.mark.parametrize("format", ["onnx", IN_OPENVINO])
def test_int8_detector_file_keeps_pixels_and_post_processing_float(checkpoints, tmp_path, format):
    suffix = get_runtime(format).suffix
    result = export_checkpoint("detect", checkpoints["detect"], format, output=tmp_path / f"d{suffix}")
    assert result.max_abs_diff == {"detections": 0.0, "num_detections": 0.0}
    if format == "openvino":  # the IR carries the metadata in its rt_info
        import openvino

        model = openvino.Core().read_model(str(result.path))
        assert decode(model.get_rt_info([KEY]).astype(str), result.path)["postprocess"]["nms"] == "inside"
    quantized = quantize_export(result, checkpoints["detect"], calibration_batches_count=1, batch_size=4)
    assert {"fp32/AP", "int8/AP"} <= set(quantized.figures)
    if format == "onnx":
        graph = onnx.load(str(quantized.path)).graph
        assert any(node.op_type == "QuantizeLinear" for node in graph.node)
        producers = {out: node for node in graph.node for out in node.output}
        float_nodes = [n for n in graph.node if n.name.startswith(("/postprocess/", "/decode/"))]
        assert float_nodes and not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in float_nodes)
        # the head's outputs come dequantized into the decoding; the post-processing takes only float values
        post = [n for n in float_nodes if n.name.startswith("/postprocess/")]
        assert "DequantizeLinear" not in [producers[i].op_type for n in post for i in n.input if i in producers]
    rows, counts = get_runtime(format).load(quantized.path).run(random_pixels(1))
    assert int(counts[0]) > 0
    int8_rows_are_exact(rows.numpy(), counts.numpy(), 5)
