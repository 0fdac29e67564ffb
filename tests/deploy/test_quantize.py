"""int8 quantization of exported models, and the fp32-vs-int8 figures against plain numpy / the task's own path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from deploy.runtimes import get_runtime
from deploy.runtimes.onnx import quantize_onnx
from tasks.classify.exported import evaluate_classification
from tasks.classify.task import main as classify_main
from tasks.common.export import export_checkpoint
from tasks.common.int8 import calibration_batches
from tasks.common.task_checkpoint import load_task
from tasks.detect.exported import FLOAT_SCOPES, detections_from_outputs, evaluate_detection
from tasks.detect.metrics.coco import CocoEvaluator
from tasks.detect.model import to_original_coordinates
from tasks.segment.exported import evaluate_segmentation
from tests.deploy.conftest import INT8_FOUND, found_fraction
from tests.helpers import SIZE, tiny_task, with_measured_statistics, write_checkpoint

QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}


def count_quantized_nodes(path: str | Path) -> int:
    """QuantizeLinear/DequantizeLinear and QLinear* nodes in an ONNX file."""
    graph = onnx.load(str(path)).graph
    return sum(node.op_type in QDQ_OPS or node.op_type.startswith("QLinear") for node in graph.node)


def export_and_quantize(task: str, folder: Path, measured_statistics: bool = False) -> dict:
    """`tiny_task`'s model exported, and quantized on two batches of train images; with `measured_statistics`, the
    detector's batch norms first take their inputs' statistics on the train images (`with_measured_statistics`).
    Seeded: a module fixture is built before the autouse per-test seed, in whatever random state the tests before
    it left."""
    torch.manual_seed(0)
    module, data = tiny_task(task, folder / "cache")
    if measured_statistics:
        data.setup("fit")
        train = data.build_dataset(data.train_split, train=False)
        with_measured_statistics(module.model, torch.stack([train[i][0] for i in range(len(train))]))
    ckpt = write_checkpoint(folder / f"{task}.ckpt", module, data)
    kwargs = {"image_size": SIZE} if task == "segment" else {}
    # the network-only file: these tests read its float outputs (the end-to-end int8 file: test_end_to_end.py)
    fp32 = export_checkpoint(
        task, ckpt, output=folder / f"{task}.onnx", dynamic_batch=True, end_to_end=False, **kwargs
    ).path
    checkpoint = load_task(task, ckpt)
    batches = calibration_batches(checkpoint, SIZE, num_batches=2, batch_size=3)
    int8 = quantize_onnx(fp32, folder / f"{task}.int8.onnx", batches, FLOAT_SCOPES)
    datamodule = checkpoint.datamodule()
    datamodule.setup("validate")
    onnx_runtime = get_runtime("onnx")
    return {
        "ckpt": ckpt,
        "checkpoint": checkpoint,
        "fp32": fp32,
        "int8": int8,
        "models": {"fp32": onnx_runtime.load(fp32), "int8": onnx_runtime.load(int8)},
        "datamodule": datamodule,
        "batches": batches,
    }


@pytest.fixture(scope="module")
def classify(tmp_path_factory) -> dict:
    return export_and_quantize("classify", tmp_path_factory.mktemp("classify"))


@pytest.fixture(scope="module")
def segment(tmp_path_factory) -> dict:
    return export_and_quantize("segment", tmp_path_factory.mktemp("segment"))


@pytest.fixture(scope="module")
def detect(tmp_path_factory) -> dict:
    return export_and_quantize("detect", tmp_path_factory.mktemp("detect"))


@pytest.fixture(scope="module")
def detect_measured(tmp_path_factory) -> dict:
    """A detector whose detections depend on the image (the plain `tiny_task` one gives every image the same)."""
    return export_and_quantize("detect", tmp_path_factory.mktemp("detect_measured"), measured_statistics=True)


def test_calibration_batches_are_train_images(classify):
    batches = classify["batches"]
    assert [b.shape for b in batches] == [(3, 3, SIZE, SIZE), (3, 3, SIZE, SIZE)]
    train = classify["datamodule"].build_dataset("train", train=False)
    np.testing.assert_array_equal(batches[1][0], train[3][0].numpy())


def test_quantized_model_has_qdq_nodes_and_tracks_fp32(classify):
    ops = {node.op_type for node in onnx.load(str(classify["int8"])).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert count_quantized_nodes(classify["int8"]) > 50 and count_quantized_nodes(classify["fp32"]) == 0
    x = torch.from_numpy(classify["batches"][0])
    fp32, int8 = (model.session.run(None, {"images": x.numpy()})[0] for model in classify["models"].values())
    assert int8.shape == fp32.shape == (3, 8)
    spread = fp32.max() - fp32.min()
    assert 0 < np.abs(int8 - fp32).max() < 0.2 * spread  # quantized, yet close to the float model


def test_detection_decoding_stays_float(detect):
    graph = onnx.load(str(detect["int8"])).graph
    producers = {out: node for node in graph.node for out in node.output}
    assert producers["scores"].op_type == "Softmax"
    decode = [node for node in graph.node if node.name.startswith("/decode/")]
    assert decode and not any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in decode)
    assert all(producers[i].op_type != "QuantizeLinear" for n in decode for i in n.input if i in producers)


def test_classification_figures_equal_numpy(classify):
    loader = classify["datamodule"].val_dataloader()
    figures = evaluate_classification(classify["models"], loader, SIZE)
    predictions = {name: [] for name in classify["models"]}
    labels = []
    for images, targets in loader:
        for name, model in classify["models"].items():
            predictions[name].append(model.session.run(None, {"images": images.numpy()})[0].argmax(1))
        labels.append(targets.numpy())
    fp32, int8, labels = (np.concatenate(v) for v in (*predictions.values(), labels))
    assert len(labels) == 8
    assert figures == {
        "fp32/top1": np.sum(fp32 == labels) / 8,
        "int8/top1": np.sum(int8 == labels) / 8,
        "top1_agreement": np.sum(fp32 == int8) / 8,
    }


def numpy_miou(predictions: list[np.ndarray], masks: list[np.ndarray], num_classes: int) -> float:
    pred, mask = np.concatenate([p.ravel() for p in predictions]), np.concatenate([m.ravel() for m in masks])
    valid = mask != 255
    ious = []
    for c in range(num_classes):
        union = np.sum(((pred == c) | (mask == c)) & valid)
        if union:
            ious.append(np.sum((pred == c) & (mask == c) & valid) / union)
    return float(np.mean(ious))


def test_segmentation_figures_equal_numpy(segment):
    loader = segment["datamodule"].val_dataloader()
    figures = evaluate_segmentation(segment["models"], loader, SIZE, 5, 255)
    predictions = {name: [] for name in segment["models"]}
    masks = []
    for images, target in loader:
        for name, model in segment["models"].items():
            predictions[name].append(model.session.run(None, {"images": images.numpy()})[0].argmax(1))
        masks.append(target.numpy())
    assert len(masks) == 3 and (np.concatenate(masks) == 255).any()
    for name, predicted in predictions.items():
        assert figures[f"{name}/mIoU"] == pytest.approx(numpy_miou(predicted, masks, 5), abs=1e-12)
    valid = np.concatenate([m.ravel() for m in masks]) != 255
    fp32, int8 = (np.concatenate([p.ravel() for p in v])[valid] for v in predictions.values())
    assert figures["pixel_agreement"] == pytest.approx(np.mean(fp32 == int8), abs=1e-12)


def test_detection_figures_equal_the_pytorch_model(detect):
    """COCO AP of the fp32 ORT model through `evaluate_detection` equals the PyTorch detector's on the same images."""
    module = detect["checkpoint"].module
    datamodule = detect["datamodule"]
    dataset, loader = datamodule.val_dataset, datamodule.val_dataloader()
    figures = evaluate_detection(detect["models"], loader, dataset, module.model, SIZE, 5)
    evaluator = CocoEvaluator(dataset.coco_gt, dataset.label_to_category_id)
    with torch.inference_mode():
        for images, targets in loader:
            detections = to_original_coordinates(
                module.model(images), [t["scale"] for t in targets], [t["orig_size"] for t in targets]
            )
            evaluator.update([int(t["image_id"]) for t in targets], detections)
    reference = evaluator.compute()
    assert reference["AP"] > 0  # random detections still hit a few boxes: the comparison means something
    # onnxruntime's and torch's kernels round differently in the last bits, and COCO AP (float64) is a step function
    # of boxes and scores: equal but for float64 rounding, relative to AP's own value (about 4e-4 here)
    assert figures["fp32/AP"] == pytest.approx(reference["AP"], rel=1e-9, abs=0)
    assert figures["fp32/AP50"] == pytest.approx(reference["AP50"], rel=1e-9, abs=0)
    assert {"int8/AP", "int8/AP50"} <= set(figures)


def test_int8_detections_match_fp32s_best(detect_measured):
    """ONNX int8 against fp32, each decoded by the detector's own post-processing, on the val and train images."""
    datamodule = detect_measured["datamodule"]
    splits = (datamodule.val_dataset, datamodule.build_dataset(datamodule.train_split, train=False))
    images = torch.stack([split[i][0] for split in splits for i in range(len(split))])
    detector = detect_measured["checkpoint"].module.model
    detections = {}
    for name, model in detect_measured["models"].items():
        scores, boxes = model.run(images)
        detections[name] = detections_from_outputs(detector, scores, boxes)
    assert len(images) == 12 and all(len(d["scores"]) >= 40 for d in detections["fp32"])
    assert len({d["scores"][:20].numpy().tobytes() for d in detections["fp32"]}) == 12  # each image its own
    assert not torch.equal(detections["fp32"][0]["scores"], detections["int8"][0]["scores"])  # int8 kernels ran
    assert found_fraction(detections["fp32"], detections["int8"], top=20, among=40, min_iou=0.8) >= INT8_FOUND


def test_export_int8_command_prints_the_figures(tmp_path, capsys):
    module, data = tiny_task("classify", tmp_path / "cache")
    ckpt = write_checkpoint(tmp_path / "last.ckpt", module, data)
    flags = ["--dynamic_batch", "--int8", "--calibration_batches", "1", "--calibration_batch_size", "4"]
    figures = classify_main(["export", "--ckpt_path", str(ckpt), *flags]).figures
    assert (tmp_path / "last.onnx").is_file() and (tmp_path / "last.int8.onnx").is_file()
    assert figures["calibration_images"] == 4 and figures["val_images"] == 8
    assert 0 <= figures["top1_agreement"] <= 1
    assert f"top1_agreement {figures['top1_agreement']:.4f}" in capsys.readouterr().out
