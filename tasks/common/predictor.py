"""The predictor base of every task: a trained checkpoint of ours applied to raw images, videos and folders.

`Predictor.from_checkpoint(path)` loads the task's LightningModule through its own `load_from_checkpoint`
(`load_task`, which `deploy.export` uses too), folds batch norm once (`backbones.fuse.fuse`) and builds the data
module's own evaluation transform from the preprocessing the checkpoint records (`datamodule_hyper_parameters`,
else the task's hyper-parameters, else the data module's defaults). `predict(images)` takes file paths, folders,
PIL images, H x W x 3 uint8 arrays and (3, H, W) tensors (uint8, or float in 0..1) of any size, mixed, and returns
one result per image in that image's own pixels, with class names. `predict_video(path, output)` writes an
annotated copy of a video. `python -m tasks.<task> predict` goes through the same task functions: `predict_step`
calls the predictor's post-processing, the writers its drawing.

A task's predictor sets `task` (a key of `TASKS`), `preprocessing` (the data module arguments its evaluation
transform reads) and implements `prepare` (image -> network input and meta), `postprocess` (network output and
metas -> results) and `annotate` (image and result -> drawn image).
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from backbones.fuse import fuse
from tasks.common.images import IMAGE_EXTENSIONS, list_image_files, load_rgb

# checkpoint files a task's hyper-parameters may name that need not exist where the checkpoint is used
WEIGHT_KEYS = ("weights", "backbone_weights")
# what every checkpoint Lightning writes has, and `load_from_checkpoint` reads
LIGHTNING_KEYS = ("state_dict", "hyper_parameters", "pytorch-lightning_version")
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm")
# the OpenCV codec each writable video suffix gets
VIDEO_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG"}
DEFAULT_FPS = 25.0  # when a video does not say

ImageInput = str | Path | Image.Image | np.ndarray | Tensor


@dataclass(frozen=True)
class TaskClasses:
    """Where a task's LightningModule, data module and predictor live (`module:attribute`, imported when needed, so
    that importing one task never imports the others)."""

    task: str
    datamodule: str
    predictor: str

    def load_task(self) -> Any:
        return _import(self.task)

    def load_datamodule(self) -> Any:
        return _import(self.datamodule)


TASKS: dict[str, TaskClasses] = {
    "classify": TaskClasses(
        "tasks.classify.task:ClassificationTask",
        "tasks.classify.data.module:ClassificationDataModule",
        "tasks.classify.predictor:Classifier",
    ),
    "segment": TaskClasses(
        "tasks.segment.task:SegmentationTask",
        "tasks.segment.data.module:SegmentationDataModule",
        "tasks.segment.predictor:Segmenter",
    ),
    "detect": TaskClasses(
        "tasks.detect.task:DetectionTask",
        "tasks.detect.data.module:DetectionDataModule",
        "tasks.detect.predictor:Detector",
    ),
}


def task_classes(task: str) -> TaskClasses:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid: {list(TASKS)}")
    return TASKS[task]


def _import(target: str) -> Any:
    module, attribute = target.split(":")
    return getattr(importlib.import_module(module), attribute)


# -- checkpoints -------------------------------------------------------------------------------------------------
@dataclass
class TaskCheckpoint:
    """A task checkpoint loaded on the CPU: the task's LightningModule (eval) and its data module's arguments."""

    task: str
    path: Path
    module: Any
    datamodule_hyper_parameters: dict[str, Any] | None

    @property
    def hparams(self) -> Any:
        return self.module.hparams

    def datamodule(self) -> Any | None:
        """The checkpoint's data module (num_workers 0), or None when the checkpoint does not record one."""
        params = self.datamodule_hyper_parameters
        if not params:
            return None
        kwargs = {k: v for k, v in params.items() if not k.startswith("_")} | {"num_workers": 0}
        return task_classes(self.task).load_datamodule()(**kwargs)


def load_task(
    task: str, path: str | Path, num_classes: int | None = None, how: str = "`python -m tasks.{task} export`"
) -> TaskCheckpoint:
    """The task's LightningModule from its own `load_from_checkpoint(map_location="cpu", weights_only=True)`, with
    the weight files its hyper-parameters name unset (the trained state replaces them; they need not exist here).

    Checked first, each a ValueError naming the file: that it is a checkpoint of this task (the hyper-parameters
    must all be arguments of the task class: Lightning would silently drop the others; `how` says how to use one of
    another task) and, when `num_classes` is given, that it equals the checkpoint's; then that the state dict fits
    the model its hyper-parameters build.
    """
    classes = task_classes(task)
    path = Path(path)
    saved = read_checkpoint(path)
    hparams = saved["hyper_parameters"]
    task_class = classes.load_task()
    _check_task(task, task_class, hparams, path, how)
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


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint Lightning wrote (`weights_only` load); FileNotFoundError or ValueError naming `path` otherwise."""
    if not path.is_file():
        raise FileNotFoundError(f"--ckpt_path {path}: no such file")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or not all(key in checkpoint for key in LIGHTNING_KEYS):
        raise ValueError(
            f"{path} is not a task checkpoint (it lacks {', '.join(LIGHTNING_KEYS)}); use one written by "
            "`python -m tasks.<classify|detect|segment> fit`"
        )
    return checkpoint


def _check_task(task: str, task_class: Any, hparams: dict[str, Any], path: Path, how: str) -> None:
    """A ValueError, naming the task that wrote it where one fits, when `hparams` are not all `task_class`'s."""
    unknown = _unknown_arguments(task_class, hparams)
    if not unknown:
        return
    owners = [name for name, classes in TASKS.items() if not _unknown_arguments(classes.load_task(), hparams)]
    owner = owners[0] if len(owners) == 1 else None
    where = how.format(task=owner, predictor=TASKS[owner].predictor.rsplit(":", 1)[1]) if owner else None
    raise ValueError(
        f"{path} is {'a ' + owner if owner else 'not a'} task checkpoint, not a {task} one (its hyper_parameters "
        f"{unknown} are not arguments of {task_class.__name__}); use it with {where or 'the task that wrote it'}"
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


def checkpoint_path(source: str | Path) -> Path:
    """The checkpoint file `source` names. Paths only for now: a resolver of named published weights (tags) goes
    here, turning a tag into the cached file it downloads."""
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {source}: no such file; pass the path of a .ckpt written by "
            "`python -m tasks.<classify|detect|segment> fit` (e.g. <run folder>/checkpoints/last.ckpt)"
        )
    return path


# -- inputs ---------------------------------------------------------------------------------------------------------
def rgb_array(image: ImageInput, name: str = "image") -> np.ndarray:
    """Any accepted input as a uint8 RGB array [H, W, 3]: what the data modules' transforms read.

    A path is decoded as the data modules decode it (`load_rgb`: EXIF orientation applied); a PIL image is taken as
    it is, converted to RGB; a float tensor in 0..1 becomes round(255 x value), the uint8 image it was made from.
    """
    if isinstance(image, str | Path):
        return load_rgb(image)
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    if isinstance(image, Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"{name}: a tensor must be (3, H, W) RGB; got shape {tuple(image.shape)}")
        if image.is_floating_point():
            low, high = float(image.min()), float(image.max())
            if low < 0.0 or high > 1.0:
                raise ValueError(f"{name}: a float tensor must hold values in 0..1; got {low:.3g}..{high:.3g}")
            image = (image.detach() * 255.0).round().to(torch.uint8)
        elif image.dtype != torch.uint8:
            raise ValueError(f"{name}: a tensor must be uint8 or float in 0..1; got {image.dtype}")
        return np.ascontiguousarray(image.detach().cpu().permute(1, 2, 0).numpy())
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"{name}: a numpy array must be uint8 H x W x 3 (RGB); got shape {image.shape}, dtype {image.dtype}"
            )
        return np.ascontiguousarray(image)
    raise TypeError(
        f"{name}: {type(image).__name__} is not an image; pass a file path, a folder, a PIL image, an H x W x 3 "
        "uint8 array or a (3, H, W) tensor"
    )


def expand_inputs(images: ImageInput | Iterable[ImageInput]) -> list[ImageInput]:
    """One input or many -> a flat list: a folder becomes its images (sorted by name), a batched (N, 3, H, W) tensor
    or (N, H, W, 3) array its N images."""
    if isinstance(images, str | Path | Image.Image) or (isinstance(images, Tensor | np.ndarray) and images.ndim == 3):
        images = [images]
    elif isinstance(images, Tensor | np.ndarray) and images.ndim == 4:
        images = list(images)
    expanded: list[ImageInput] = []
    for item in images:
        if isinstance(item, str | Path):
            path = Path(item)
            if path.is_dir():
                found = list_image_files(path)
                if not found:
                    raise FileNotFoundError(f"folder {path}: no images ({', '.join(IMAGE_EXTENSIONS)}) directly in it")
                expanded += found
                continue
            if path.suffix.lower() in VIDEO_EXTENSIONS:
                raise ValueError(f"{path} is a video: use predict_video({str(path)!r}, output)")
            if not path.is_file():
                raise FileNotFoundError(f"image {path}: no such file or folder")
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                raise ValueError(f"{path}: not an image file ({', '.join(IMAGE_EXTENSIONS)})")
        expanded.append(item)
    return expanded


@dataclass(frozen=True)
class VideoPrediction:
    """What `predict_video` wrote: the annotated video, its frame count, rate and size."""

    output: Path
    frames: int
    fps: float
    size: tuple[int, int]  # (width, height)


# -- the predictor ---------------------------------------------------------------------------------------------------
class Predictor:
    """A trained task on raw inputs (see the module docstring). Subclasses: `Detector`, `Segmenter`, `Classifier`."""

    task: ClassVar[str]
    preprocessing: ClassVar[tuple[str, ...]]  # the data module arguments of its evaluation transform

    def __init__(
        self, module: Any, datamodule_hyper_parameters: dict[str, Any] | None = None, device: str = "cpu"
    ) -> None:
        self.device = torch.device(device)
        self.class_names: list[str] = list(module.class_names)
        self.hparams = dict(module.hparams)
        self.model: nn.Module = fuse(module.model).eval().to(self.device)
        self.preprocessing_arguments = self.recorded_preprocessing(self.hparams, datamodule_hyper_parameters or {})
        datamodule = task_classes(self.task).load_datamodule()(**self.preprocessing_arguments, num_workers=0)
        self.transform = datamodule.eval_transform()

    @classmethod
    def from_checkpoint(cls, source: str | Path, device: str = "cpu") -> Any:
        """The predictor of a checkpoint written by `python -m tasks.<task> fit` (a path; named weights later)."""
        loaded = load_task(cls.task, checkpoint_path(source), how="tasks.{task}.{predictor}.from_checkpoint")
        return cls(loaded.module, loaded.datamodule_hyper_parameters, device)

    @classmethod
    def recorded_preprocessing(cls, hparams: dict[str, Any], datamodule: dict[str, Any]) -> dict[str, Any]:
        """The `preprocessing` arguments: the data module's recorded ones, else the task's same-named
        hyper-parameters (image size, resolution), else left to the data module's defaults."""
        found = {k: hparams[k] for k in cls.preprocessing if k in hparams}
        return found | {k: datamodule[k] for k in cls.preprocessing if k in datamodule}

    # -- task hooks ------------------------------------------------------------------------------------------------
    def prepare(self, image: np.ndarray) -> tuple[Tensor, dict[str, Any]]:
        """uint8 RGB [H, W, 3] -> (network input [3, h, w], meta as the data module's predict items carry)."""
        raise NotImplementedError

    def postprocess(self, outputs: Any, metas: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """The network's outputs for a batch -> one result per image, in its own pixels, with class names."""
        raise NotImplementedError

    def annotate(self, image: np.ndarray, result: dict[str, Any]) -> np.ndarray:
        """uint8 RGB [H, W, 3] with `result` drawn on it."""
        raise NotImplementedError

    # -- prediction ------------------------------------------------------------------------------------------------
    def predict(self, images: ImageInput | Iterable[ImageInput], batch_size: int = 8) -> list[dict[str, Any]]:
        """One result per image (a folder counts as its images, in name order), in input order; results of path
        inputs carry their `path`. Images are batched `batch_size` at a time; within a batch only inputs of one
        network-input shape run together, so an image's result never depends on its neighbours."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        inputs = expand_inputs(images)
        results: list[dict[str, Any]] = []
        for start in range(0, len(inputs), batch_size):
            chunk = inputs[start : start + batch_size]
            arrays = [rgb_array(item, f"images[{start + i}]") for i, item in enumerate(chunk)]
            chunk_results = self.predict_arrays(arrays)
            for item, result in zip(chunk, chunk_results, strict=True):
                results.append({**result, "path": str(item)} if isinstance(item, str | Path) else result)
        return results

    def predict_arrays(self, arrays: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        """Results for uint8 RGB arrays, all run in as few network calls as their input shapes allow."""
        prepared = [self.prepare(array) for array in arrays]
        groups: dict[tuple[int, ...], list[int]] = {}
        for index, (tensor, _) in enumerate(prepared):
            groups.setdefault(tuple(tensor.shape), []).append(index)
        results: list[dict[str, Any] | None] = [None] * len(arrays)
        for indices in groups.values():
            batch = torch.stack([prepared[i][0] for i in indices]).to(self.device)
            with torch.inference_mode():
                outputs = self.model(batch)
            found = self.postprocess(outputs, [prepared[i][1] for i in indices])
            for index, result in zip(indices, found, strict=True):
                results[index] = result
        return [r for r in results if r is not None]

    def predict_video(self, source: str | Path, output: str | Path, batch_size: int = 8) -> VideoPrediction:
        """Write `output` (.mp4, .m4v, .mov: mp4v; .avi: MJPG), every frame of `source` with its result drawn."""
        source, output = Path(source), Path(output)
        codec = VIDEO_CODECS.get(output.suffix.lower())
        if codec is None:
            raise ValueError(f"output {output}: the video suffix must be one of {list(VIDEO_CODECS)}")
        capture = _open_video(source)
        fps = capture.get(cv2.CAP_PROP_FPS) or DEFAULT_FPS
        writer: cv2.VideoWriter | None = None
        frames = 0
        size = (0, 0)
        try:
            for batch in _batches(_frames(capture), batch_size):
                for frame, result in zip(batch, self.predict_arrays(batch), strict=True):
                    if writer is None:
                        size = (frame.shape[1], frame.shape[0])
                        output.parent.mkdir(parents=True, exist_ok=True)
                        writer = cv2.VideoWriter(str(output), cv2.VideoWriter_fourcc(*codec), fps, size)
                        if not writer.isOpened():
                            raise OSError(f"output {output}: OpenCV cannot write {codec} video here")
                    writer.write(cv2.cvtColor(self.annotate(frame, result), cv2.COLOR_RGB2BGR))
                    frames += 1
        finally:
            capture.release()
            if writer is not None:
                writer.release()
        if frames == 0:
            raise ValueError(f"video {source}: no frame could be read")
        return VideoPrediction(output, frames, float(fps), size)


def _open_video(source: Path) -> cv2.VideoCapture:
    if not source.is_file():
        raise FileNotFoundError(f"video {source}: no such file")
    capture = cv2.VideoCapture(str(source))
    if not capture.isOpened():
        raise ValueError(f"video {source}: OpenCV cannot read it (formats: {', '.join(VIDEO_EXTENSIONS)})")
    return capture


def _frames(capture: cv2.VideoCapture) -> Iterator[np.ndarray]:
    """The frames of an open video as uint8 RGB [H, W, 3]."""
    while True:
        ok, frame = capture.read()
        if not ok:
            return
        yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def _batches(frames: Iterator[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    batch: list[np.ndarray] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
