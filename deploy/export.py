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

import importlib
import inspect
import logging
import re
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
    """Where a task's LightningModule and data module live (`module:attribute`, imported when first needed, as the
    tasks import `deploy.cli`), and what its exported network takes and gives."""

    task_class: str
    datamodule_class: str
    outputs: tuple[str, ...]
    size_key: str | None  # the hyper-parameter holding the input size, if any
    default_size: int | None = None  # without one
    wrap: Callable[[nn.Module, int], nn.Module] | None = None  # (network, input size) -> what is exported

    def load_task_class(self) -> Any:
        return _import(self.task_class)

    def load_datamodule_class(self) -> Any:
        return _import(self.datamodule_class)


TASKS: dict[str, TaskInfo] = {
    "classify": TaskInfo(
        "tasks.classify:ClassificationTask",
        "tasks.classify.data.module:ClassificationDataModule",
        ("logits",),
        "resolution",
    ),
    "segment": TaskInfo(
        "tasks.segment:SegmentationTask",
        "tasks.segment.data.module:SegmentationDataModule",
        ("logits",),
        None,
        SEGMENT_IMAGE_SIZE,
    ),
    "detect": TaskInfo(
        "tasks.detect:DetectionTask",
        "tasks.detect.data.module:DetectionDataModule",
        ("scores", "boxes"),
        "image_size",
        wrap=DetectorOutputs,
    ),
}


def task_info(task: str) -> TaskInfo:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid: {list(TASKS)}")
    return TASKS[task]


def _import(target: str) -> Any:
    module, attribute = target.split(":")
    return getattr(importlib.import_module(module), attribute)


def exportable_model(task: str, module: nn.Module, image_size: int) -> nn.Module:
    """The task's network with batch norms fused, returning the outputs the module docstring lists."""
    info = task_info(task)
    network = module.model if info.wrap is None else info.wrap(module.model, image_size)
    return fuse(network)


# -- checkpoints -------------------------------------------------------------------------------------------------
@dataclass
class TaskCheckpoint:
    """A task checkpoint loaded for export: the task's LightningModule (eval) and its data module's arguments."""

    task: str
    path: Path
    module: Any
    datamodule_hyper_parameters: dict[str, Any] | None

    @property
    def hparams(self) -> Any:
        return self.module.hparams

    def input_size(self, image_size: int | None = None) -> int:
        """`image_size` (--image_size), else the checkpoint's own (classify: resolution, detect: image_size), else
        the task's default (segment: 520)."""
        if image_size is not None:
            if image_size < 32:
                raise ValueError(f"--image_size must be >= 32 (the backbones stride down 32 times), got {image_size}")
            return image_size
        info = task_info(self.task)
        return int(self.hparams[info.size_key]) if info.size_key is not None else int(info.default_size)

    def datamodule(self) -> Any | None:
        """The checkpoint's data module (num_workers 0), or None when the checkpoint does not record one."""
        params = self.datamodule_hyper_parameters
        if not params:
            return None
        kwargs = {k: v for k, v in params.items() if not k.startswith("_")} | {"num_workers": 0}
        return task_info(self.task).load_datamodule_class()(**kwargs)


def load_task(task: str, path: str | Path, num_classes: int | None = None) -> TaskCheckpoint:
    """The task's LightningModule from its own `load_from_checkpoint`, weight files unset (see the module docstring).

    Checked first, each a ValueError naming the file: that it is a checkpoint of this task (the hyper-parameters
    must all be arguments of the task class: Lightning would silently drop the others) and, when `num_classes` is
    given, that it equals the checkpoint's; then that the state dict fits the model its hyper-parameters build.
    """
    info = task_info(task)
    path = Path(path)
    saved = _read_checkpoint(path)
    hparams = saved["hyper_parameters"]
    task_class = info.load_task_class()
    _check_task(task, task_class, hparams, path)
    saved_classes = hparams.get("num_classes")
    if num_classes is not None and num_classes != saved_classes:
        raise ValueError(
            f"--num_classes {num_classes} does not match {path}, trained with num_classes={saved_classes} (its "
            f"hyper_parameters); the class count is fixed by the trained head: drop --num_classes or pass "
            f"{saved_classes}"
        )
    unset = dict.fromkeys((k for k in WEIGHT_KEYS if k in hparams), None)
    try:
        module = task_class.load_from_checkpoint(path, map_location="cpu", weights_only=True, **unset)
    except RuntimeError as error:  # load_state_dict: missing, unexpected or differently shaped tensors
        described = {k: hparams[k] for k in ("backbone", "width", "num_classes", "head") if k in hparams}
        raise ValueError(
            f"{path}: its state_dict does not fit its own hyper_parameters {described} (e.g. a head with another "
            f"class count): {_shapes_message(error)}"
        ) from error
    return TaskCheckpoint(task, path, module.eval(), saved.get("datamodule_hyper_parameters"))


def _read_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"--ckpt_path {path}: no such file")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or not all(key in checkpoint for key in LIGHTNING_KEYS):
        raise ValueError(
            f"{path} is not a task checkpoint (it lacks {', '.join(LIGHTNING_KEYS)}); export needs one written by "
            "`python -m tasks.<classify|detect|segment> fit`"
        )
    return checkpoint


def _check_task(task: str, task_class: Any, hparams: dict[str, Any], path: Path) -> None:
    """A ValueError, naming the task that wrote it where one fits, when `hparams` are not all `task_class`'s."""
    unknown = _unknown_arguments(task_class, hparams)
    if not unknown:
        return
    owners = [name for name, info in TASKS.items() if not _unknown_arguments(info.load_task_class(), hparams)]
    owner = owners[0] if len(owners) == 1 else None
    where = f"`python -m tasks.{owner} export`" if owner else "the task that wrote it"
    raise ValueError(
        f"{path} is {'a ' + owner if owner else 'not a'} task checkpoint, not a {task} one (its hyper_parameters "
        f"{unknown} are not arguments of {task_class.__name__}); export it with {where}"
    )


def _unknown_arguments(task_class: Any, hparams: dict[str, Any]) -> list[str]:
    accepted = inspect.signature(task_class.__init__).parameters
    return sorted(k for k in hparams if not k.startswith("_") and k not in accepted)


def _shapes_message(error: RuntimeError) -> str:
    """torch's load_state_dict error on one line, shapes written `key [8, 16] in the file, [10, 16] ...`."""
    message = re.sub(
        r"size mismatch for (\S+): copying a param with shape torch\.Size\((\[[^\]]*\])\) from checkpoint, "
        r"the shape in current model is torch\.Size\((\[[^\]]*\])\)",
        r"\1 \2 in the file, \3 for the hyper-parameters",
        str(error),
    )
    return " ".join(message.split())


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
    size = checkpoint.input_size(image_size)
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
