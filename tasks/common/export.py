"""Export a task checkpoint with batch norm fused, through any registered runtime, and check the file right after.

What a task exports (input `images` float32 [N, 3, S, S], normalised as the task's data module does) is its
spec's (`tasks.registry.TaskSpec`: `outputs`, `input_size`, `exportable`): see `tasks/<task>/exported.py`.

The checkpoint is loaded by the task's own `load_from_checkpoint` (`weights_only=True`), with the weight files its
hyper-parameters name unset: the trained state replaces them, and they need not exist where the export runs.
The file is written by the runtime named by `--format` (`deploy.runtimes`, which knows nothing of tasks), then
reopened by that runtime and run on validation images of the checkpoint's own data module (random normal images
when that data cannot be read; the result says which), at the exported batch size and, with a dynamic batch, at one
more; every output must be within `TOLERANCE` of the fused PyTorch model (boxes: `TOLERANCE` x image size, as they
are in pixels).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from backbones.fuse import conv_bn_pairs, fuse
from deploy.metadata import encode
from deploy.runtimes import INPUT_NAME, get_runtime
from deploy.runtimes.base import output_list
from tasks.common.end_to_end import Compare, max_abs_diff, pixels
from tasks.common.task_checkpoint import TaskCheckpoint, load_task
from tasks.registry import get_task

log = logging.getLogger(__name__)

TOLERANCE = 1e-4
CHECK_SEED = 0


class ExportCheckError(RuntimeError):
    """The exported file's outputs differ from the PyTorch model's by more than the tolerance."""


def exportable_model(task: str, module: nn.Module, image_size: int) -> nn.Module:
    """The task's exported network (its spec's `exportable`) with batch norms fused."""
    return fuse(get_task(task).exportable(module.model, image_size))


# -- checkpoints -------------------------------------------------------------------------------------------------
def input_size(checkpoint: TaskCheckpoint, image_size: int | None = None) -> int:
    """`image_size` (--image_size), else the checkpoint's own (the hyper-parameter its spec's `input_size` names:
    classify: resolution, detect: image_size), else the spec's fixed size (segment: 520)."""
    if image_size is not None:
        if image_size < 32:
            raise ValueError(f"--image_size must be >= 32 (the backbones stride down 32 times), got {image_size}")
        return image_size
    size = get_task(checkpoint.task).input_size
    return int(checkpoint.hparams[size]) if isinstance(size, str) else size


# -- inputs for the check ------------------------------------------------------------------------------------------
def resize_images(images: Tensor, size: int) -> Tensor:
    """Normalised images bilinearly resized to size x size (no-op when they are already)."""
    if tuple(images.shape[-2:]) == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


def dataset_images(dataset: Any, count: int, size: int) -> Tensor:
    """The first `count` images of a dataset (cycled when it is smaller), each resized to size x size."""
    if len(dataset) == 0:
        raise ValueError("the dataset is empty")
    images = [resize_images(dataset[i % len(dataset)][0][None], size)[0] for i in range(count)]
    return torch.stack(images)


def check_images(checkpoint: TaskCheckpoint, size: int, count: int) -> tuple[Tensor, str]:
    """`count` validation images of the checkpoint's data module at `size`, else random normal ones; and which."""
    try:
        datamodule = checkpoint.datamodule()
        if datamodule is not None:
            datamodule.prepare_data()
            datamodule.setup("validate")
            return dataset_images(datamodule.val_dataset, count, size), "validation images"
        reason = "the checkpoint records no data module"
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        reason = f"its data could not be read ({error})"
    log.warning("checking the export on random normal images: %s", reason)
    generator = torch.Generator().manual_seed(CHECK_SEED)
    return torch.randn(count, 3, size, size, generator=generator), "random normal images"


# -- export and check ------------------------------------------------------------------------------------------------
def check_export(
    path: Path, format: str, reference: nn.Module, batches: Sequence[Tensor], outputs: Sequence[str], compare: Compare
) -> tuple[dict[str, float], dict[str, float]]:
    """The file, run by its runtime, against `reference` on every batch: `compare`'s differences (the largest over
    the batches) within its tolerances, else an ExportCheckError."""
    loaded = get_runtime(format, "--format").load(path)
    diffs: dict[str, float] = {}
    tolerance: dict[str, float] = {}
    for batch in batches:
        with torch.inference_mode():
            expected = output_list(reference(batch))
        got = loaded.run(batch)
        for name, have, want in zip(outputs, got, expected, strict=True):
            if have.shape != want.shape:
                raise ExportCheckError(
                    f"{path}: output {name} has shape {list(have.shape)}, expected {list(want.shape)}"
                )
        found, tolerance = compare(got, expected, batch.shape[-1])
        diffs = {name: max(diffs.get(name, 0.0), value) for name, value in found.items()}
    failed = {name: diff for name, diff in diffs.items() if not diff <= tolerance[name]}
    if failed:
        raise ExportCheckError(
            f"{path}: exported outputs differ from the PyTorch model beyond the tolerance: "
            + ", ".join(f"{name} {diff:.3g} > {tolerance[name]:.1g}" for name, diff in failed.items())
        )
    return diffs, tolerance


def network_compare(outputs: Sequence[str]) -> Compare:
    """The network-only file's comparison: each output's largest absolute difference within `TOLERANCE` (boxes:
    `TOLERANCE` x the input side, as they are in pixels)."""

    def compare(got: Sequence[Tensor], want: Sequence[Tensor], size: int) -> tuple[dict[str, float], dict[str, float]]:
        tolerances = [TOLERANCE * (size if name == "boxes" else 1) for name in outputs]
        return max_abs_diff(outputs, tolerances)(got, want, size)

    return compare


@dataclass
class ExportResult:
    task: str
    path: Path
    format: str
    input_shape: tuple[int, ...]
    dynamic_batch: bool
    outputs: tuple[str, ...]
    end_to_end: bool
    any_size: bool  # an end-to-end file that takes any height and width
    folded_pairs: int
    check_inputs: str  # what the check ran on
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    tolerance: dict[str, float] = field(default_factory=dict)
    task_options: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        batch = "dynamic batch" if self.dynamic_batch else f"batch {self.input_shape[0]}"
        kind = "end-to-end, uint8 RGB input, metadata inside" if self.end_to_end else "network only, float input"
        diffs = ", ".join(f"{k} {v:.2e} (tolerance {self.tolerance[k]:.0e})" for k, v in self.max_abs_diff.items())
        return (
            f"exported {self.task} to {self.path} ({self.format}, {kind}): input {INPUT_NAME} "
            f"{list(self.input_shape)} ({batch}), outputs {', '.join(self.outputs)}; {self.folded_pairs} conv-bn "
            f"pairs folded\ncheck ({get_runtime(self.format).loader}) on {self.check_inputs}: difference {diffs}"
        )


def export_checkpoint(
    task: str,
    ckpt_path: str | Path,
    format: str = "onnx",
    *,
    output: str | Path | None = None,
    dynamic_batch: bool = False,
    image_size: int | None = None,
    num_classes: int | None = None,
    batch_size: int = 1,
    end_to_end: bool = True,
    task_options: dict[str, Any] | None = None,
    **options: Any,
) -> ExportResult:
    """Load the task from `ckpt_path`, fuse batch norms, export with the runtime `format`, and check the file
    (raises ExportCheckError). `end_to_end`: the task's end-to-end file (uint8 pixels in, post-processing and
    metadata inside, `tasks.common.end_to_end`; `task_options` are its spec's `end_to_end_options`), else the
    network alone (normalised float input, the spec's `outputs`). `options` are the runtime's own (onnx: `opset`);
    the output defaults to the checkpoint's path with the runtime's suffix (last.ckpt -> last.onnx)."""
    spec = get_task(task)
    runtime = get_runtime(format, "--format")
    if batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1, got {batch_size}")
    options = runtime.prepare(**options)  # fail before any work
    task_options = {k: v for k, v in (task_options or {}).items() if v is not None}
    unknown = sorted(set(task_options) - set(spec.end_to_end_options))
    if unknown or (task_options and not end_to_end):
        raise ValueError(
            f"{task} export options {unknown or sorted(task_options)} are not valid here; with --end_to_end true it "
            f"takes {sorted(spec.end_to_end_options) or 'none'}"
        )
    checkpoint = load_task(task, ckpt_path, num_classes)
    size = input_size(checkpoint, image_size)
    counts = [batch_size, batch_size + 1] if dynamic_batch else [batch_size]
    images, source = check_images(checkpoint, size, sum(counts))
    if end_to_end:
        built = spec.end_to_end(checkpoint, size, runtime.nms, **task_options)
        model, outputs, compare, metadata = built.module, built.outputs, built.compare, built.metadata
        dynamic_size = built.any_size and runtime.any_size
        if built.any_size and not dynamic_size:  # this runtime fixes the size: the runner resizes to it
            metadata["input"] |= {"size": [size, size], "resize": "stretch", "interpolation": "bilinear"}
        if not dynamic_batch:
            metadata["input"]["batch"] = batch_size
        images = pixels(images, built.mean, built.std)
    else:
        model, outputs, dynamic_size = exportable_model(task, checkpoint.module, size), spec.outputs, False
        compare = network_compare(outputs)
    batches = list(torch.split(images, counts))
    if dynamic_size:  # also check at another height than the traced one
        batches.append(batches[0][:, :, : size // 2])
    path = Path(output) if output is not None else Path(ckpt_path).with_suffix(runtime.suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    runtime.export(model, batches[0], path, outputs, dynamic_batch, dynamic_size, **options)
    if end_to_end:
        runtime.write_metadata(path, encode(metadata))
    diffs, tolerance = check_export(path, format, model, batches, outputs, compare)
    return ExportResult(
        task=task,
        path=path,
        format=format,
        input_shape=(batch_size, 3, size, size),
        dynamic_batch=dynamic_batch,
        outputs=tuple(outputs),
        end_to_end=end_to_end,
        any_size=dynamic_size,
        folded_pairs=len(conv_bn_pairs(checkpoint.module.model)),
        check_inputs=f"{len(images)} {source} (batches of {', '.join(map(str, counts))})",
        max_abs_diff=diffs,
        tolerance=tolerance,
        task_options=task_options,
    )
