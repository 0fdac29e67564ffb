"""Export a task checkpoint to ONNX or TorchScript, batch norm folded, and check the file right after writing it.

What each task exports (input `images` float32 [N, 3, S, S], normalised as the task's data module does):
- classify: `logits` [N, K].
- segment: `logits` [N, C, S, S], already upsampled to the input size.
- detect: SSDLite up to, not including, NMS: `scores` [N, A, K], the softmax over all K classes of each of the A
  default boxes (column 0 is background), and `boxes` [N, A, 4], the decoded boxes, x1 y1 x2 y2 in input pixels,
  clipped to the image. Per-class top-k, the score threshold and NMS stay in Python:
  `detections_from_outputs` turns the two outputs into final detections with `SSDLite.postprocess` itself.

ONNX goes through torch's TorchScript-based exporter (`dynamo=False`): it exports these models in about a second
where the dynamo exporter takes ten (v3_small, 2 CPU threads), needs no onnxscript, writes GlobalAveragePool
rather than a Shape/Range/ReduceMean chain, and names nodes by module scope, which `deploy.quantize` uses to keep
the detection decoding in float. It is deprecated in torch >= 2.9: the call is in `export_onnx` alone.

The check: onnxruntime (CPUExecutionProvider) or the reloaded TorchScript module runs on validation images of the
checkpoint's own data module (random normal images when that data cannot be read; the result says which), at the
exported batch size and, with a dynamic batch, at one more; every output must be within `TOLERANCE` of the folded
PyTorch model (boxes: `TOLERANCE` x image size, as they are in pixels).
"""

from __future__ import annotations

import importlib
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import clip_boxes_to_image

from deploy.folding import conv_bn_pairs, fold_batch_norms
from heads.ssdlite import SSDLite

log = logging.getLogger(__name__)

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
INPUT_NAME = "images"
TOLERANCE = 1e-4
DEFAULT_OPSET = 17
# QuantizeLinear/DequantizeLinear take a per-channel `axis` from opset 13 on: the int8 models need it.
MIN_OPSET = 13
SEGMENT_IMAGE_SIZE = 520  # torchvision's segmentation evaluation size
CHECK_SEED = 0


def _max_opset() -> int:
    """The highest opset both the TorchScript-based exporter and the installed onnx know."""
    from torch.onnx import _constants

    exporter_max = getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 20)
    try:
        import onnx
    except ImportError:
        return exporter_max
    return min(exporter_max, onnx.defs.onnx_opset_version())


MAX_OPSET = _max_opset()


@dataclass(frozen=True)
class TaskInfo:
    """Where a task's LightningModule and data module live, and how to recognise its checkpoints."""

    name: str
    module: str
    task_class: str
    datamodule: str
    datamodule_class: str
    markers: tuple[str, ...]  # hyper-parameters only this task has
    size_key: str | None  # the hyper-parameter holding the input size, if any
    outputs: tuple[str, ...]

    def load(self, attribute: str) -> Any:
        return getattr(importlib.import_module(self.module), attribute)


TASKS: dict[str, TaskInfo] = {
    "classify": TaskInfo(
        "classify",
        "tasks.classify",
        "ClassificationTask",
        "tasks.classify.data.module",
        "ClassificationDataModule",
        ("resolution",),
        "resolution",
        ("logits",),
    ),
    "segment": TaskInfo(
        "segment",
        "tasks.segment",
        "SegmentationTask",
        "tasks.segment.data.module",
        "SegmentationDataModule",
        ("head", "output_stride"),
        None,
        ("logits",),
    ),
    "detect": TaskInfo(
        "detect",
        "tasks.detect",
        "DetectionTask",
        "tasks.detect.data.module",
        "DetectionDataModule",
        ("image_size", "reduced_tail"),
        "image_size",
        ("scores", "boxes"),
    ),
}
# checkpoint files a task's hyper-parameters may name that need not exist at export time
WEIGHT_KEYS = ("weights", "backbone_weights")


class ExportCheckError(RuntimeError):
    """The exported file's outputs differ from the PyTorch model's by more than the tolerance."""


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
            f"check ({'onnxruntime' if self.format == 'onnx' else 'torch.jit.load'}) on {self.check_inputs}: "
            f"max abs diff {diffs}"
        )


# -- checkpoints -------------------------------------------------------------------------------------------------
def read_task_checkpoint(path: str | Path) -> dict[str, Any]:
    """A Lightning checkpoint (tensors and plain values only: `weights_only=True`) with hyper-parameters."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--ckpt_path {path}: no such file")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "hyper_parameters" not in checkpoint:
        raise ValueError(
            f"{path} is not a task checkpoint (it has no state_dict and hyper_parameters); export needs one "
            "written by `python -m tasks.<classify|detect|segment> fit`"
        )
    return checkpoint


def infer_task(hyper_parameters: dict[str, Any]) -> str | None:
    """The task whose marker hyper-parameters the checkpoint has, or None."""
    found = [name for name, info in TASKS.items() if all(k in hyper_parameters for k in info.markers)]
    return found[0] if len(found) == 1 else None


def build_task(task: str, checkpoint: dict[str, Any], path: str | Path, num_classes: int | None = None) -> nn.Module:
    """The task's LightningModule rebuilt from the checkpoint's hyper-parameters (weight files unset), then loaded."""
    info = _task_info(task)
    hparams = dict(checkpoint["hyper_parameters"])
    owner = infer_task(hparams)
    if owner != task:
        keys = ", ".join(TASKS[owner].markers) if owner else "none of " + str(sorted(_all_markers()))
        where = f"`python -m tasks.{owner} export`" if owner else "the task that wrote it"
        raise ValueError(
            f"{path} is {'a ' + owner if owner else 'not a'} task checkpoint, not a {task} one (its hyper_parameters "
            f"have {keys}; {task} checkpoints have {', '.join(info.markers)}); export it with {where}"
        )
    saved_classes = hparams.get("num_classes")
    if num_classes is not None and num_classes != saved_classes:
        raise ValueError(
            f"--num_classes {num_classes} does not match {path}, trained with num_classes={saved_classes} (its "
            f"hyper_parameters); the class count is fixed by the trained head: drop --num_classes or pass "
            f"{saved_classes}"
        )
    kwargs = {k: v for k, v in hparams.items() if not k.startswith("_")}
    kwargs |= {k: None for k in WEIGHT_KEYS if k in kwargs}
    task_class = info.load(info.task_class)
    try:
        module = task_class(**kwargs)
    except TypeError as error:
        raise ValueError(f"{path}: its hyper_parameters do not fit {task_class.__name__} ({error})") from error
    _load_state(module, checkpoint["state_dict"], path, hparams)
    return module.eval()


def _load_state(module: nn.Module, state: dict[str, Tensor], path: str | Path, hparams: dict[str, Any]) -> None:
    expected = module.state_dict()
    mismatched = [
        f"{key} {list(value.shape)} in the file, {list(expected[key].shape)} for the hyper-parameters"
        for key, value in state.items()
        if key in expected and value.shape != expected[key].shape
    ]
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if mismatched or missing or unexpected:
        described = {k: hparams.get(k) for k in ("backbone", "width", "num_classes", "head") if k in hparams}
        problems = mismatched[:3] + [f"missing {k}" for k in missing[:3]] + [f"unexpected {k}" for k in unexpected[:3]]
        raise ValueError(
            f"{path}: its state_dict does not fit its own hyper_parameters {described} (e.g. a head with another "
            f"class count): {'; '.join(problems)}"
        )
    module.load_state_dict(state)


def _task_info(task: str) -> TaskInfo:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid: {list(TASKS)}")
    return TASKS[task]


def _all_markers() -> set[str]:
    return {key for info in TASKS.values() for key in info.markers}


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


def exportable_model(task: str, module: nn.Module, image_size: int) -> nn.Module:
    """The task's network with batch norms folded, returning the outputs the module docstring lists."""
    _task_info(task)
    network = module.model
    if task == "detect":
        network = DetectorOutputs(network, image_size)
    return fold_batch_norms(network)


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
def input_size(task: str, hyper_parameters: dict[str, Any], image_size: int | None = None) -> int:
    """--image_size, else the checkpoint's own (classify: resolution, detect: image_size), else 520 (segment)."""
    if image_size is not None:
        if image_size < 32:
            raise ValueError(f"--image_size must be >= 32 (the backbones stride down 32 times), got {image_size}")
        return image_size
    key = _task_info(task).size_key
    return int(hyper_parameters[key]) if key is not None else SEGMENT_IMAGE_SIZE


def build_datamodule(task: str, checkpoint: dict[str, Any]) -> Any | None:
    """The checkpoint's data module (num_workers 0), or None when the checkpoint does not record one."""
    params = checkpoint.get("datamodule_hyper_parameters")
    if not params:
        return None
    info = _task_info(task)
    kwargs = {k: v for k, v in params.items() if not k.startswith("_")} | {"num_workers": 0}
    return getattr(importlib.import_module(info.datamodule), info.datamodule_class)(**kwargs)


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


def check_images(task: str, checkpoint: dict[str, Any], size: int, count: int) -> tuple[Tensor, str]:
    """`count` validation images of the checkpoint's data module at `size`, else random normal ones; and which."""
    try:
        datamodule = build_datamodule(task, checkpoint)
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
def check_opset(opset: int) -> None:
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ValueError(
            f"--opset {opset} is not supported; valid: {MIN_OPSET}..{MAX_OPSET} ({MIN_OPSET}: per-channel "
            f"QuantizeLinear for the int8 models; {MAX_OPSET}: the highest both torch {torch.__version__}'s "
            "TorchScript-based ONNX exporter and the installed onnx support)"
        )


def import_onnxruntime() -> Any:
    """onnxruntime, or an ImportError that says how to install it."""
    try:
        import onnxruntime
    except ImportError as error:
        raise ImportError(
            "ONNX export checks and int8 quantization need onnxruntime, which is not installed: "
            "pip install onnxruntime (or the dev extra: pip install -e '.[dev]')"
        ) from error
    return onnxruntime


def import_onnx() -> Any:
    try:
        import onnx
    except ImportError as error:
        raise ImportError("ONNX export needs the onnx package, which is not installed: pip install onnx") from error
    return onnx


def ort_session(path: str | Path, threads: int | None = None, spinning: bool = True) -> Any:
    """A CPU onnxruntime session with all graph optimisations; `threads` sets intra-op threads.

    `spinning=False` stops idle worker threads from busy-waiting after a run, which would otherwise take the cores
    from whatever runs next in the process (a benchmark interleaving runtimes).
    """
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def export_onnx(
    model: nn.Module, example: Tensor, path: Path, outputs: Sequence[str], opset: int, dynamic_batch: bool
) -> None:
    """torch.onnx.export with the TorchScript-based exporter (see the module docstring for why)."""
    check_opset(opset)
    import_onnx()
    axes = {name: {0: "batch"} for name in (INPUT_NAME, *outputs)} if dynamic_batch else None
    with warnings.catch_warnings():
        # the legacy-exporter notice, and shape checks in Python that the trace records as constants (the check
        # at a second batch size catches any that matter)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=".*will be removed.*")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=list(outputs),
            dynamic_axes=axes,
            do_constant_folding=True,
        )


def export_torchscript(model: nn.Module, example: Tensor, path: Path) -> None:
    """torch.jit.trace (deprecated in torch >= 2.9, still what TorchScript runtimes load)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.trace.* is deprecated.*", category=FutureWarning)
        traced = torch.jit.trace(model, example, check_trace=False)
    traced.save(str(path))


def load_torchscript(path: Path) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.* is deprecated.*", category=FutureWarning)
        return torch.jit.load(str(path))


def check_export(
    path: Path, format: str, reference: nn.Module, batches: Sequence[Tensor], outputs: Sequence[str], image_size: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Max abs difference per output between the file (run by onnxruntime / torch.jit.load) and `reference`."""
    tolerance = {name: TOLERANCE * (image_size if name == "boxes" else 1) for name in outputs}
    if format == "onnx":
        session = ort_session(path)

        def run(x: Tensor) -> list[Tensor]:
            return [torch.from_numpy(y) for y in session.run(list(outputs), {INPUT_NAME: x.numpy()})]
    else:
        loaded = load_torchscript(path)

        def run(x: Tensor) -> list[Tensor]:
            with torch.inference_mode():
                return list(_as_tuple(loaded(x)))

    diffs = dict.fromkeys(outputs, 0.0)
    for batch in batches:
        with torch.inference_mode():
            expected = _as_tuple(reference(batch))
        for name, got, want in zip(outputs, run(batch), expected, strict=True):
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


def _as_tuple(outputs: Tensor | Sequence[Tensor]) -> tuple[Tensor, ...]:
    return (outputs,) if isinstance(outputs, Tensor) else tuple(outputs)


def default_output(ckpt_path: str | Path, format: str) -> Path:
    """Next to the checkpoint: last.ckpt -> last.onnx / last.torchscript.pt."""
    return Path(ckpt_path).with_suffix(SUFFIXES[format])


def export_checkpoint(
    task: str,
    ckpt_path: str | Path,
    format: str = "onnx",
    *,
    output: str | Path | None = None,
    dynamic_batch: bool = False,
    opset: int = DEFAULT_OPSET,
    image_size: int | None = None,
    num_classes: int | None = None,
    batch_size: int = 1,
) -> ExportResult:
    """Rebuild the task from `ckpt_path`, fold batch norms, export, and check the file (raises ExportCheckError)."""
    _task_info(task)
    if format not in FORMATS:
        raise ValueError(f"--format {format!r} is not supported; valid: {list(FORMATS)}")
    if batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1, got {batch_size}")
    if format == "onnx":  # fail before any work
        check_opset(opset)
        import_onnx()
        import_onnxruntime()
    checkpoint = read_task_checkpoint(ckpt_path)
    module = build_task(task, checkpoint, ckpt_path, num_classes)
    size = input_size(task, checkpoint["hyper_parameters"], image_size)
    model = exportable_model(task, module, size)
    outputs = TASKS[task].outputs
    counts = [batch_size, batch_size + 1] if dynamic_batch else [batch_size]
    images, source = check_images(task, checkpoint, size, sum(counts))
    batches = list(torch.split(images, counts))
    path = Path(output) if output is not None else default_output(ckpt_path, format)
    path.parent.mkdir(parents=True, exist_ok=True)
    if format == "onnx":
        export_onnx(model, batches[0], path, outputs, opset, dynamic_batch)
    else:
        export_torchscript(model, batches[0], path)
    diffs, tolerance = check_export(path, format, model, batches, outputs, size)
    return ExportResult(
        task=task,
        path=path,
        format=format,
        input_shape=(batch_size, 3, size, size),
        dynamic_batch=dynamic_batch,
        outputs=outputs,
        folded_pairs=len(conv_bn_pairs(module.model)),
        check_inputs=f"{len(images)} {source} (batches of {', '.join(map(str, counts))})",
        max_abs_diff=diffs,
        tolerance=tolerance,
    )
