"""int8 post-training static quantization of a checked export, and fp32-vs-int8 figures on the validation split:
`python -m tasks.<task> export --ckpt_path last.ckpt --int8 [--format onnx|openvino|executorch]`.

Each runtime quantizes its own files behind one call (`Runtime.quantize`: onnx by onnxruntime's `quantize_static`,
openvino by NNCF on the IR, executorch by torch's pt2e XNNPACK quantizer), given the fused model, its checked fp32
file, calibration batches and the task's `float_scopes` (the detection decoding stays float: its scores reach the
0.001 score threshold and its boxes are in pixels, which 8-bit steps would blunt). Calibration batches come from the
task's *train* split with the evaluation transform (deterministic, and not the split the figures are measured on);
the figures are the task's `evaluate_exported` on whatever the runtime's `load` returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from deploy.runtimes import Loaded, get_runtime, list_runtimes
from deploy.runtimes.base import FixedBatch
from tasks.common.end_to_end import END_TO_END_FLOAT_SCOPES, PixelInput, pixels
from tasks.common.export import ExportResult, dataset_images, exportable_model
from tasks.common.task_checkpoint import TaskCheckpoint, load_task
from tasks.registry import get_task


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


# (fused model, checked fp32 file, int8 file to write, calibration batches, scopes kept float, *, dynamic_batch,
# batch_size: how the fp32 file was exported) -> the int8 file
Quantizer = Callable[..., Path]


def int8_formats() -> list[str]:
    """The `--format`s that `--int8` takes: every runtime with a `quantize` method."""
    return [name for name in list_runtimes() if hasattr(get_runtime(name), "quantize")]


def quantizer(format: str) -> Quantizer:
    """How `format`'s files become int8: its runtime's `quantize` method."""
    runtime = get_runtime(format, "--format")
    if not hasattr(runtime, "quantize"):
        raise ValueError(f"--int8 is not supported with --format {format}; formats with int8: {int8_formats()}")
    return runtime.quantize


def int8_path_for(path: Path, suffix: str) -> Path:
    """last.onnx -> last.int8.onnx, last.openvino.xml -> last.int8.openvino.xml."""
    stem = path.name[: -len(suffix)] if path.name.endswith(suffix) else path.stem
    return path.with_name(f"{stem}.int8{suffix}")


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
    images, and score fp32 and int8 on the val split with the task's `evaluate_exported`."""
    quantize = quantizer(exported.format)
    spec = get_task(exported.task)
    runtime = get_runtime(exported.format)
    checkpoint = load_task(exported.task, ckpt_path)
    size = exported.input_shape[-1]
    batches = calibration_batches(checkpoint, size, calibration_batches_count, batch_size)
    float_scopes = spec.float_scopes
    if exported.end_to_end:  # the same module as the fp32 file, fed uint8 pixels; pixels and post-processing float
        built = spec.end_to_end(checkpoint, size, runtime.nms, **exported.task_options)
        # the outputs too: OpenVINO names the node of an output after it, outside its module's scope
        model, float_scopes = built.module, (*float_scopes, *END_TO_END_FLOAT_SCOPES, *exported.outputs)
        batches = [pixels(torch.from_numpy(b), built.mean, built.std).numpy() for b in batches]
    else:
        model = exportable_model(exported.task, checkpoint.module, size)
    int8_path = Path(output) if output is not None else int8_path_for(exported.path, runtime.suffix)
    int8_path = quantize(
        model,
        exported.path,
        int8_path,
        batches,
        float_scopes,
        dynamic_batch=exported.dynamic_batch,
        batch_size=exported.input_shape[0],
    )
    models: dict[str, Loaded] = {"fp32": runtime.load(exported.path), "int8": runtime.load(int8_path)}
    if not exported.dynamic_batch:
        models = {name: FixedBatch(loaded, exported.input_shape[0]) for name, loaded in models.items()}
    if exported.end_to_end:
        models = {name: PixelInput(loaded, built.mean, built.std) for name, loaded in models.items()}
    datamodule = checkpoint.datamodule()
    datamodule.setup("validate")
    evaluated_size = None if exported.any_size else size
    figures = spec.evaluate_exported(models, datamodule, checkpoint, evaluated_size, exported.outputs)
    figures["calibration_images"] = float(sum(len(b) for b in batches))
    figures["val_images"] = float(len(datamodule.val_dataset))
    return QuantizeResult(exported, int8_path, figures)
