"""Export a task checkpoint with batch norm fused, through any registered runtime, and check the file right after.

What each task exports (input `images` float32 [N, 3, S, S], normalised as the task's data module does):
- classify: `logits` [N, K].
- segment: `logits` [N, C, S, S], already upsampled to the input size.
- detect: SSDLite up to, not including, NMS: `scores` [N, A, K], the softmax over all K classes of each of the A
  default boxes (column 0 is background), and `boxes` [N, A, 4], the decoded boxes, x1 y1 x2 y2 in input pixels,
  clipped to the image. Per-class top-k, the score threshold and NMS stay in Python:
  `detections_from_outputs` turns the two outputs into final detections with `SSDLite.postprocess` itself.

The checkpoint is loaded by the task's own `load_from_checkpoint` (`weights_only=True`), with the weight files its
hyper-parameters name unset: the trained state replaces them, and they need not exist where the export runs.
The file is written by the runtime named by `--format` (`deploy.runtimes`), then reopened by that runtime and run
on validation images of the checkpoint's own data module (random normal images when that data cannot be read; the
result says which), at the exported batch size and, with a dynamic batch, at one more; every output must be within
`TOLERANCE` of the fused PyTorch model (boxes: `TOLERANCE` x image size, as they are in pixels).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import clip_boxes_to_image

from backbones.fuse import conv_bn_pairs, fuse
from deploy.runtimes import INPUT_NAME, get_runtime
from deploy.runtimes.base import output_list
from heads.ssdlite import SSDLite
from tasks.common.predictor import TaskCheckpoint, load_task  # the predictors' loader; quantize imports them here

log = logging.getLogger(__name__)

TOLERANCE = 1e-4
SEGMENT_IMAGE_SIZE = 520  # torchvision's segmentation evaluation size
CHECK_SEED = 0
# checkpoint files a task's hyper-parameters may name that need not exist at export time
WEIGHT_KEYS = ("weights", "backbone_weights")
# what every checkpoint Lightning writes has, and `load_from_checkpoint` reads
LIGHTNING_KEYS = ("state_dict", "hyper_parameters", "pytorch-lightning_version")


class ExportCheckError(RuntimeError):
    """The exported file's outputs differ from the PyTorch model's by more than the tolerance."""


# -- what is exported ----------------------------------------------------------------------------------------------
class DetectorOutputs(nn.Module):
    """SSDLite before NMS: softmax scores over all classes and decoded, clipped boxes of every default box.

    The default boxes depend on the input size only; they are computed once here and exported as a constant.
    The decoding sits in the `decode` submodule so that its ONNX nodes are named `/decode/...`.
    """

    def __init__(self, detector: SSDLite, image_size: int) -> None:
        super().__init__()
        self.backbone = detector.backbone
        self.head = detector.head
        training = detector.training
        detector.eval()  # the probe must not move batch-norm statistics
        with torch.no_grad():
            probe = torch.zeros(1, 3, image_size, image_size)
            anchors = detector.anchors(probe, detector.backbone(probe)).clone()
        detector.train(training)
        self.decode = BoxDecoder(detector, anchors, image_size)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        logits, codes = self.head(self.backbone(images))
        return self.decode(logits, codes)


class BoxDecoder(nn.Module):
    """Class logits -> softmax scores; box codes -> boxes with the detector's own BoxCoder, then clipped."""

    def __init__(self, detector: SSDLite, anchors: Tensor, image_size: int) -> None:
        super().__init__()
        self.box_coder = detector.box_coder
        self.register_buffer("anchors", anchors)
        self.image_size = (image_size, image_size)

    def forward(self, logits: Tensor, codes: Tensor) -> tuple[Tensor, Tensor]:
        anchors = self.anchors.expand_as(codes).reshape(-1, 4)
        boxes = self.box_coder.decode_single(codes.reshape(-1, 4), anchors).reshape(codes.shape)
        return F.softmax(logits, dim=-1), clip_boxes_to_image(boxes, self.image_size)


@dataclass(frozen=True)
class TaskInfo:
    """What a task's exported network takes and gives (where its classes live: `tasks.common.predictor.TASKS`)."""

    outputs: tuple[str, ...]
    size_key: str | None  # the hyper-parameter holding the input size, if any
    default_size: int | None = None  # without one
    wrap: Callable[[nn.Module, int], nn.Module] | None = None  # (network, input size) -> what is exported


TASKS: dict[str, TaskInfo] = {
    "classify": TaskInfo(("logits",), "resolution"),
    "segment": TaskInfo(("logits",), None, SEGMENT_IMAGE_SIZE),
    "detect": TaskInfo(("scores", "boxes"), "image_size", wrap=DetectorOutputs),
}


def task_info(task: str) -> TaskInfo:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid: {list(TASKS)}")
    return TASKS[task]


def exportable_model(task: str, module: nn.Module, image_size: int) -> nn.Module:
    """The task's network with batch norms fused, returning the outputs the module docstring lists."""
    info = task_info(task)
    network = module.model if info.wrap is None else info.wrap(module.model, image_size)
    return fuse(network)


# -- checkpoints -------------------------------------------------------------------------------------------------
def input_size(checkpoint: TaskCheckpoint, image_size: int | None = None) -> int:
    """`image_size` (--image_size), else the checkpoint's own (classify: resolution, detect: image_size), else the
    task's default (segment: 520)."""
    if image_size is not None:
        if image_size < 32:
            raise ValueError(f"--image_size must be >= 32 (the backbones stride down 32 times), got {image_size}")
        return image_size
    info = task_info(checkpoint.task)
    return int(checkpoint.hparams[info.size_key]) if info.size_key is not None else int(info.default_size)


def detections_from_outputs(
    detector: SSDLite, scores: Tensor, boxes: Tensor, image_size: Sequence[int]
) -> list[dict[str, Tensor]]:
    """Final detections (per image: `boxes`, `scores`, `labels`) from exported `scores` and `boxes`.

    This is `SSDLite.postprocess` itself, fed so that it reproduces its inputs: log-probabilities are logits whose
    softmax gives the probabilities back, and zero box codes decode to the reference boxes they are given, so the
    decoded boxes of each image go in as that image's "anchors" (one call per image, as anchors are shared by a
    batch). Thresholds, top-k, NMS and the detection count are the detector's.
    """
    scores, boxes = torch.as_tensor(scores), torch.as_tensor(boxes)
    logits = scores.log()
    detections = []
    for index in range(len(scores)):
        codes = torch.zeros_like(boxes[index : index + 1])
        detections += detector.postprocess(logits[index : index + 1], codes, boxes[index], tuple(image_size))
    return detections


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
    path: Path, format: str, reference: nn.Module, batches: Sequence[Tensor], outputs: Sequence[str], image_size: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Max abs difference per output between the file, run by its runtime, and `reference`."""
    tolerance = {name: TOLERANCE * (image_size if name == "boxes" else 1) for name in outputs}
    loaded = get_runtime(format, "--format").load(path)
    diffs = dict.fromkeys(outputs, 0.0)
    for batch in batches:
        with torch.inference_mode():
            expected = output_list(reference(batch))
        for name, got, want in zip(outputs, loaded.run(batch), expected, strict=True):
            if got.shape != want.shape:
                raise ExportCheckError(
                    f"{path}: output {name} has shape {list(got.shape)}, expected {list(want.shape)}"
                )
            diffs[name] = max(diffs[name], float((got - want).abs().max()))
    failed = {name: diff for name, diff in diffs.items() if not diff <= tolerance[name]}
    if failed:
        raise ExportCheckError(
            f"{path}: exported outputs differ from the PyTorch model beyond the tolerance: "
            + ", ".join(f"{name} max abs diff {diff:.3g} > {tolerance[name]:.1g}" for name, diff in failed.items())
        )
    return diffs, tolerance


@dataclass
class ExportResult:
    task: str
    path: Path
    format: str
    input_shape: tuple[int, ...]
    dynamic_batch: bool
    outputs: tuple[str, ...]
    folded_pairs: int
    check_inputs: str  # what the check ran on
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    tolerance: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        batch = "dynamic batch" if self.dynamic_batch else f"batch {self.input_shape[0]}"
        diffs = ", ".join(f"{k} {v:.2e} (tolerance {self.tolerance[k]:.0e})" for k, v in self.max_abs_diff.items())
        return (
            f"exported {self.task} to {self.path} ({self.format}): input {INPUT_NAME} {list(self.input_shape)} "
            f"({batch}), outputs {', '.join(self.outputs)}; {self.folded_pairs} conv-bn pairs folded\n"
            f"check ({get_runtime(self.format).loader}) on {self.check_inputs}: max abs diff {diffs}"
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
    **options: Any,
) -> ExportResult:
    """Load the task from `ckpt_path`, fuse batch norms, export with the runtime `format`, and check the file
    (raises ExportCheckError). `options` are the runtime's own (onnx: `opset`); the output defaults to the
    checkpoint's path with the runtime's suffix (last.ckpt -> last.onnx)."""
    info = task_info(task)
    runtime = get_runtime(format, "--format")
    if batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1, got {batch_size}")
    options = runtime.prepare(**options)  # fail before any work
    checkpoint = load_task(task, ckpt_path, num_classes)
    size = input_size(checkpoint, image_size)
    model = exportable_model(task, checkpoint.module, size)
    counts = [batch_size, batch_size + 1] if dynamic_batch else [batch_size]
    images, source = check_images(checkpoint, size, sum(counts))
    batches = list(torch.split(images, counts))
    path = Path(output) if output is not None else Path(ckpt_path).with_suffix(runtime.suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    runtime.export(model, batches[0], path, info.outputs, dynamic_batch, **options)
    diffs, tolerance = check_export(path, format, model, batches, info.outputs, size)
    return ExportResult(
        task=task,
        path=path,
        format=format,
        input_shape=(batch_size, 3, size, size),
        dynamic_batch=dynamic_batch,
        outputs=info.outputs,
        folded_pairs=len(conv_bn_pairs(checkpoint.module.model)),
        check_inputs=f"{len(images)} {source} (batches of {', '.join(map(str, counts))})",
        max_abs_diff=diffs,
        tolerance=tolerance,
    )
