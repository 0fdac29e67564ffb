"""int8 post-training static quantization of an exported model, and fp32-vs-int8 figures on the validation split.

The quantizer is onnxruntime's `quantize_static`, not torch.ao's PT2E: the deployed artefact is the ONNX file that
`deploy.export` wrote and checked, and quantizing that very graph keeps one path from checkpoint to runtime. The
QDQ format (QuantizeLinear/DequantizeLinear pairs around float ops) is a plain ONNX file that onnxruntime's CPU
provider fuses into int8 kernels (QLinearConv and friends) and that other runtimes read too, whereas a PT2E model
would need its own int8 lowering (inductor / XNNPACK) and has no supported route to ONNX. Settings: per-channel
symmetric int8 weights, uint8 activations (U8S8, the fast pair on x86 with VNNI), MinMax ranges from calibration
batches of the task's *train* split with the evaluation transform (deterministic, and not the split the figures
are measured on). The detection decoding (`/decode/...`: softmax, box decoding, clipping) stays in float: its
scores reach the 0.001 score threshold and its boxes are in pixels, which 8-bit steps would blunt.

Other runtimes quantize their own files behind the same calls (`quantizer`): a runtime with a `quantize` method
(openvino: NNCF on the IR, executorch: torch's pt2e XNNPACK quantizer) is given the fused model, its checked fp32
file, the calibration batches and `FLOAT_SCOPES`, and the figures are measured by the same evaluation code on
whatever its `load` returns (`quantize_export`, which `export --int8` calls too).

`python -m deploy.quantize --task classify --ckpt_path last.ckpt [--format openvino]` exports, quantizes and prints
the figures: classification top-1 of each and their top-1 agreement, segmentation mIoU of each, detection COCO AP of
each.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deploy.export import (
    ExportResult,
    TaskCheckpoint,
    dataset_images,
    detections_from_outputs,
    export_checkpoint,
    exportable_model,
    load_task,
    resize_images,
)
from deploy.runtimes import INPUT_NAME, Loaded, get_runtime, list_runtimes
from deploy.runtimes.base import FixedBatch
from deploy.runtimes.onnx import DEFAULT_OPSET, import_onnx, import_onnxruntime

log = logging.getLogger(__name__)

# Nodes kept in float: the detector's decoding (see the module docstring); scopes come from the exporter's names.
FLOAT_SCOPES = ("/decode/",)
QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}


def calibration_batches(checkpoint: TaskCheckpoint, size: int, num_batches: int, batch_size: int) -> list[np.ndarray]:
    """`num_batches` batches of train-split images (evaluation transform, resized to `size`) from the checkpoint's
    data module, in dataset order."""
    datamodule = checkpoint.datamodule()
    if datamodule is None:
        raise ValueError(f"{checkpoint.path} records no data module, so there are no calibration images")
    datamodule.prepare_data()
    dataset = datamodule.build_dataset(datamodule.train_split, train=False)
    count = min(len(dataset), num_batches * batch_size)
    images = dataset_images(dataset, count, size)
    return [batch.numpy() for batch in torch.split(images, batch_size)]


class BatchReader:
    """onnxruntime's CalibrationDataReader protocol over a list of input batches."""

    def __init__(self, batches: Iterable[np.ndarray], input_name: str = INPUT_NAME) -> None:
        self._feeds = iter([{input_name: np.ascontiguousarray(b, dtype=np.float32)} for b in batches])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def quantize_onnx(
    fp32_path: str | Path,
    int8_path: str | Path,
    batches: Sequence[np.ndarray],
    float_scopes: Sequence[str] = FLOAT_SCOPES,
) -> Path:
    """QDQ int8 model of `fp32_path` calibrated (MinMax) on `batches`; nodes named under `float_scopes` stay float."""
    onnx = import_onnx()
    import_onnxruntime()
    from onnxruntime.quantization import quant_pre_process

    if not batches:
        raise ValueError("quantization needs at least one calibration batch")
    int8_path = Path(int8_path)
    with tempfile.TemporaryDirectory() as folder:
        # onnxruntime's recommended pre-processing: shape inference, and graph optimisation that turns the
        # exporter's Identity-shared initializers (equal biases) back into constants the quantizer can fold
        prepared = Path(folder) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared))
        graph = onnx.load(str(prepared)).graph
        excluded = [node.name for node in graph.node if node.name.startswith(tuple(float_scopes))]
        fixed_batch = graph.input[0].type.tensor_type.shape.dim[0].dim_value  # 0 when dynamic
        if fixed_batch:  # a fixed-batch model is calibrated on batches of its own size (a remainder is dropped)
            batches = [b[i : i + fixed_batch] for b in batches for i in range(0, len(b) - fixed_batch + 1, fixed_batch)]
        _quantize(prepared, int8_path, batches, excluded)
    return int8_path


def _quantize(prepared: Path, int8_path: Path, batches: Sequence[np.ndarray], excluded: list[str]) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(
        str(prepared),
        str(int8_path),
        BatchReader(batches),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        nodes_to_exclude=excluded,
    )


# (fused model, checked fp32 file, int8 file to write, calibration batches, scopes kept float, *, dynamic_batch,
# batch_size: how the fp32 file was exported) -> the int8 file
Quantizer = Callable[..., Path]


def _onnx_quantizer(
    model: nn.Module,
    fp32_path: Path,
    int8_path: Path,
    batches: Sequence[np.ndarray],
    float_scopes: Sequence[str],
    **export: Any,
) -> Path:
    return quantize_onnx(fp32_path, int8_path, batches, float_scopes)


def int8_formats() -> list[str]:
    """The `--format`s that `--int8` takes: onnx, and every runtime with a `quantize` method."""
    return sorted({"onnx", *(name for name in list_runtimes() if hasattr(get_runtime(name), "quantize"))})


def quantizer(format: str) -> Quantizer:
    """How `format`'s files become int8: onnx by `quantize_onnx`, any other runtime by its `quantize` method."""
    runtime = get_runtime(format, "--format")
    if format == "onnx":
        return _onnx_quantizer
    if not hasattr(runtime, "quantize"):
        raise ValueError(f"--int8 is not supported with --format {format}; formats with int8: {int8_formats()}")
    return runtime.quantize


def int8_path_for(path: Path, suffix: str) -> Path:
    """last.onnx -> last.int8.onnx, last.openvino.xml -> last.int8.openvino.xml."""
    stem = path.name[: -len(suffix)] if path.name.endswith(suffix) else path.stem
    return path.with_name(f"{stem}.int8{suffix}")


def count_quantized_nodes(path: str | Path) -> int:
    """QuantizeLinear/DequantizeLinear and QLinear* nodes in an ONNX file."""
    graph = import_onnx().load(str(path)).graph
    return sum(node.op_type in QDQ_OPS or node.op_type.startswith("QLinear") for node in graph.node)


# -- figures from outputs (plain functions, so that tests compare them with numpy) --------------------------------
def classification_figures(logits: Mapping[str, np.ndarray], labels: np.ndarray) -> dict[str, float]:
    """Top-1 of each model (`<name>/top1`) and, for two models, the fraction of images where they agree."""
    predictions = {name: np.asarray(v).argmax(1) for name, v in logits.items()}
    figures = {f"{name}/top1": float((p == labels).mean()) for name, p in predictions.items()}
    if len(predictions) == 2:
        first, second = predictions.values()
        figures["top1_agreement"] = float((first == second).mean())
    return figures


# -- running exported models over a loader ----------------------------------------------------------------------
def evaluate_classification(models: Mapping[str, Loaded], loader: Iterable, size: int) -> dict[str, float]:
    """Top-1 of each model and their agreement over `loader`'s (images, labels) batches."""
    logits: dict[str, list[np.ndarray]] = {name: [] for name in models}
    labels = []
    for images, targets in loader:
        images = resize_images(images, size)
        for name, model in models.items():
            logits[name].append(model.run(images)[0].numpy())
        labels.append(np.asarray(targets))
    return classification_figures({k: np.concatenate(v) for k, v in logits.items()}, np.concatenate(labels))


def evaluate_segmentation(
    models: Mapping[str, Loaded], loader: Iterable, size: int, num_classes: int, ignore_index: int
) -> dict[str, float]:
    """mIoU of each model (`<name>/mIoU`) over the whole loader, as the segmentation task scores it (one confusion
    matrix over the set, `segmentation_scores`), and their pixel agreement.

    Images whose size differs from the exported one are resized to it, and the logits back to the mask's size
    (bilinear), the same for every model.
    """
    from torchmetrics.classification import MulticlassConfusionMatrix

    from tasks.segment.metrics import segmentation_scores

    confusion = {name: MulticlassConfusionMatrix(num_classes, ignore_index=ignore_index) for name in models}
    agree, pixels = 0, 0
    for images, masks in loader:
        inputs = resize_images(images, size)
        predictions = {}
        for name, model in models.items():
            logits = model.run(inputs)[0]
            if tuple(logits.shape[-2:]) != tuple(masks.shape[-2:]):
                logits = F.interpolate(logits, size=tuple(masks.shape[-2:]), mode="bilinear", align_corners=False)
            predictions[name] = logits.argmax(1)
            confusion[name].update(predictions[name], masks)
        if len(predictions) == 2:
            first, second = predictions.values()
            valid = masks != ignore_index
            agree += int((first == second)[valid].sum())
            pixels += int(valid.sum())
    figures = {f"{name}/mIoU": segmentation_scores(metric.compute())["mIoU"] for name, metric in confusion.items()}
    if pixels:
        figures["pixel_agreement"] = agree / pixels
    return figures


def evaluate_detection(
    models: Mapping[str, Loaded], loader: Iterable, dataset: Any, detector: Any, size: int, num_classes: int
) -> dict[str, float]:
    """COCO AP / AP50 (and VOC mAP50 where the dataset has VOC ground truth) of each model over the loader.

    Detections go through `detections_from_outputs` (SSDLite's own postprocess), then to original-image pixels as
    the detection task maps them, into the evaluators the detection task sets up for the dataset.
    """
    from tasks.detect.metrics import evaluators_for
    from tasks.detect.model import to_original_coordinates

    evaluators = {name: evaluators_for(dataset, num_classes) for name in models}
    for images, targets in loader:
        to_input = images.shape[-1] / size  # exported-size pixels -> the data's input pixels
        inputs = resize_images(images, size)
        image_ids = [int(t["image_id"]) for t in targets]
        for name, model in models.items():
            scores, boxes = model.run(inputs)
            detections = detections_from_outputs(detector, scores, boxes, (size, size))
            detections = [{**d, "boxes": d["boxes"] * to_input} for d in detections]
            detections = to_original_coordinates(
                detections, [t["scale"] for t in targets], [t["orig_size"] for t in targets]
            )
            for evaluator in evaluators[name].values():
                evaluator.update(image_ids, detections)
    figures = {}
    for name, by_kind in evaluators.items():
        for evaluator in by_kind.values():
            metrics = evaluator.compute()
            figures |= {f"{name}/{k}": v for k, v in metrics.items() if k in ("AP", "AP50", "mAP50")}
    return figures


# what `report` measures per task: (models, validation data module, checkpoint, input size) -> figures
Evaluation = Callable[[Mapping[str, Loaded], Any, TaskCheckpoint, int], dict[str, float]]
EVALUATIONS: dict[str, Evaluation] = {
    "classify": lambda models, data, _, size: evaluate_classification(models, data.val_dataloader(), size),
    "segment": lambda models, data, checkpoint, size: evaluate_segmentation(
        models, data.val_dataloader(), size, checkpoint.hparams["num_classes"], data.ignore_index
    ),
    "detect": lambda models, data, checkpoint, size: evaluate_detection(
        models,
        data.val_dataloader(),
        data.val_dataset,
        checkpoint.module.model,
        size,
        checkpoint.hparams["num_classes"],
    ),
}


@dataclass
class QuantizeResult:
    """The int8 file of a checked fp32 export, and the fp32-vs-int8 figures on the validation split."""

    fp32: ExportResult
    path: Path
    figures: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        figures = ", ".join(f"{name} {value:.4f}" for name, value in self.figures.items())
        return f"int8 {self.fp32.format} model {self.path}; fp32 vs int8 on the val split: {figures}"


def quantize_export(
    exported: ExportResult,
    ckpt_path: str | Path,
    *,
    output: str | Path | None = None,
    calibration_batches_count: int = 8,
    batch_size: int = 16,
) -> QuantizeResult:
    """Quantize the checked export `exported` of `ckpt_path` with its runtime's quantizer, calibrated on train-split
    images, and score fp32 and int8 on the val split with the task's evaluation (`EVALUATIONS`)."""
    quantize = quantizer(exported.format)
    if exported.task not in EVALUATIONS:
        raise ValueError(f"--task {exported.task!r} is not one of {list(EVALUATIONS)}")
    runtime = get_runtime(exported.format)
    checkpoint = load_task(exported.task, ckpt_path)
    size = exported.input_shape[-1]
    batches = calibration_batches(checkpoint, size, calibration_batches_count, batch_size)
    model = exportable_model(exported.task, checkpoint.module, size)
    int8_path = Path(output) if output is not None else int8_path_for(exported.path, runtime.suffix)
    int8_path = quantize(
        model,
        exported.path,
        int8_path,
        batches,
        FLOAT_SCOPES,
        dynamic_batch=exported.dynamic_batch,
        batch_size=exported.input_shape[0],
    )
    models: dict[str, Loaded] = {"fp32": runtime.load(exported.path), "int8": runtime.load(int8_path)}
    if not exported.dynamic_batch:
        models = {name: FixedBatch(loaded, exported.input_shape[0]) for name, loaded in models.items()}
    datamodule = checkpoint.datamodule()
    datamodule.setup("validate")
    figures = EVALUATIONS[exported.task](models, datamodule, checkpoint, size)
    figures["calibration_images"] = float(sum(len(b) for b in batches))
    figures["val_images"] = float(len(datamodule.val_dataset))
    return QuantizeResult(exported, int8_path, figures)


def report(
    task: str,
    ckpt_path: str | Path,
    *,
    format: str = "onnx",
    output_dir: str | Path | None = None,
    image_size: int | None = None,
    calibration_batches_count: int = 8,
    batch_size: int = 16,
    opset: int = DEFAULT_OPSET,
) -> dict[str, float]:
    """Export fp32 (dynamic batch) with the runtime `format`, quantize with train-split calibration, evaluate both on
    the val split."""
    if task not in EVALUATIONS:
        raise ValueError(f"--task {task!r} is not one of {list(EVALUATIONS)}")
    quantizer(format)  # fail before any work
    runtime = get_runtime(format, "--format")
    folder = Path(output_dir) if output_dir is not None else Path(ckpt_path).parent
    options = {"opset": opset} if "opset" in runtime.options else {}
    exported = export_checkpoint(
        task,
        ckpt_path,
        format,
        output=folder / f"{Path(ckpt_path).stem}{runtime.suffix}",
        dynamic_batch=True,
        image_size=image_size,
        **options,
    )
    log.info("%s", exported.summary())
    result = quantize_export(
        exported, ckpt_path, calibration_batches_count=calibration_batches_count, batch_size=batch_size
    )
    return result.figures


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(prog="python -m deploy.quantize", description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", required=True, choices=list(EVALUATIONS))
    parser.add_argument("--ckpt_path", required=True)
    parser.add_argument("--format", default="onnx", choices=int8_formats(), help="the runtime (default %(default)s)")
    parser.add_argument("--output_dir", default=None, help="default: the checkpoint's folder")
    parser.add_argument("--image_size", type=int, default=None, help="default: as `export`")
    parser.add_argument("--calibration_batches", type=int, default=8)
    parser.add_argument("--batch_size", type=int, default=16, help="calibration batch size")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    figures = report(
        args.task,
        args.ckpt_path,
        format=args.format,
        output_dir=args.output_dir,
        image_size=args.image_size,
        calibration_batches_count=args.calibration_batches,
        batch_size=args.batch_size,
    )
    for name, value in figures.items():
        print(f"{name:<20} {value:.4f}")
    return figures


if __name__ == "__main__":
    main()
