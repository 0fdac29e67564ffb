"""The predictor base of every task: a trained checkpoint of ours, or named published weights, applied to raw
images, videos and folders.

`Predictor.from_checkpoint(path)` loads the task's LightningModule through its own `load_from_checkpoint`
(`load_task`, which `deploy.export` uses too), folds batch norm once (`backbones.fuse.fuse`) and builds the data
module's own evaluation transform from the preprocessing the checkpoint records (`datamodule_hyper_parameters`,
else the task's hyper-parameters, else the data module's defaults). `Predictor.from_weights(name, tag)` (or
`from_checkpoint("name:tag")`) builds the task model of an entry of `backbones.weights` (downloaded, hash checked,
into torch's hub cache) and takes the entry's preprocessing (mean, std, input size) and categories (class names).
`predict(images)` takes file paths, folders, PIL images, H x W x 3 uint8 arrays and (3, H, W) tensors (uint8, or
float in 0..1) of any size, mixed, and returns one result per image in that image's own pixels, with class names.
`predict_video(path, output)` returns one result per frame and writes an annotated copy of the video;
`stream_video` yields the frames' results one at a time. `python -m tasks.<task> predict` goes through the same
task functions: `predict_step` calls the predictor's post-processing, the writers its drawing.

A task's predictor sets `task` (a key of `TASKS`), `preprocessing` (the data module arguments its evaluation
transform reads) and implements `prepare` (image -> network input and meta), `postprocess` (network output and
metas -> results) and `annotate` (image and result -> drawn image); `weights_preprocessing` and
`weights_hyper_parameters` map a weights entry's preprocessing onto its data module and task arguments.
"""

from __future__ import annotations

import importlib
import inspect
import math
import re
import string
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

import cv2
import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from backbones import list_backbones
from backbones.fuse import fuse
from backbones.weights.registry import (
    DEFAULT_TAG,
    WeightsEntry,
    find_weights,
    get_weights,
    weights_names,
    weights_tags,
)
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
    """Where a task's LightningModule, data module, predictor and CLI live (`module:attribute`, imported when needed,
    so that importing one task never imports the others)."""

    task: str
    datamodule: str
    predictor: str
    cli: str

    def load_task(self) -> Any:
        return _import(self.task)

    def load_datamodule(self) -> Any:
        return _import(self.datamodule)

    def load_predictor(self) -> Any:
        return _import(self.predictor)

    def load_cli(self) -> Any:
        return _import(self.cli)


TASKS: dict[str, TaskClasses] = {
    "classify": TaskClasses(
        "tasks.classify.task:ClassificationTask",
        "tasks.classify.data.module:ClassificationDataModule",
        "tasks.classify.predictor:Classifier",
        "tasks.classify.task:ClassifyCLI",
    ),
    "segment": TaskClasses(
        "tasks.segment.task:SegmentationTask",
        "tasks.segment.data.module:SegmentationDataModule",
        "tasks.segment.predictor:Segmenter",
        "tasks.segment.task:SegmentCLI",
    ),
    "detect": TaskClasses(
        "tasks.detect.task:DetectionTask",
        "tasks.detect.data.module:DetectionDataModule",
        "tasks.detect.predictor:Detector",
        "tasks.detect.task:DetectCLI",
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
    # as the file holds them: `module.hparams` has the weight files unset (`load_task`)
    saved_hyper_parameters: dict[str, Any] = field(default_factory=dict)

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
    return TaskCheckpoint(task, path, module.eval(), saved.get("datamodule_hyper_parameters"), dict(hparams))


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
    """What `predict_video` did: the annotated video it wrote (None when asked for results only), its frame count, rate
    and size, and one result per frame (`predict`'s, plus the frame's `frame` index and `time` in seconds)."""

    output: Path | None
    frames: int
    fps: float
    size: tuple[int, int]  # (width, height)
    results: list[dict[str, Any]] = field(default_factory=list)


# -- named weights -------------------------------------------------------------------------------------------------
_NAME_TAG = re.compile(r"(?P<name>\w+)[:.](?P<tag>[\w-]+)")  # "ssdlite320_v3_large:coco" (or timm's ".coco")
_TAG = re.compile(r"[\w-]+")


def fit_crop_pct(image_size: int, resize_size: int) -> float:
    """The crop fraction for which the classification transforms' `int(image_size / crop_pct)` is `resize_size`
    (image_size / resize_size, nudged down where floating point would land one pixel short)."""
    crop_pct = image_size / resize_size
    while int(image_size / crop_pct) < resize_size:
        crop_pct = math.nextafter(crop_pct, 0.0)
    return crop_pct


def weights_crop_pct(entry: WeightsEntry) -> float:
    """The crop fraction of a classifier entry: its resize size (or none: its input size) before its crop."""
    return fit_crop_pct(entry.image_size, entry.resize_size or entry.image_size)


# -- the predictor ---------------------------------------------------------------------------------------------------
class Predictor:
    """A trained task on raw inputs (see the module docstring). Subclasses: `Detector`, `Segmenter`, `Classifier`."""

    task: ClassVar[str]
    preprocessing: ClassVar[tuple[str, ...]]  # the data module arguments of its evaluation transform

    def __init__(
        self,
        module: Any,
        datamodule_hyper_parameters: dict[str, Any] | None = None,
        device: str = "cpu",
        *,
        weights: WeightsEntry | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        """`weights`: the named weights `module` was built from (`from_weights`), whose preprocessing the predictor
        applies; `class_names`: instead of the module's."""
        self.device = torch.device(device)
        self.weights = weights
        self.class_names: list[str] = list(module.class_names if class_names is None else class_names)
        self.hparams = dict(module.hparams)
        self.model: nn.Module = fuse(module.model).eval().to(self.device)
        self.preprocessing_arguments = self.recorded_preprocessing(self.hparams, datamodule_hyper_parameters or {})
        datamodule = task_classes(self.task).load_datamodule()(**self.preprocessing_arguments, num_workers=0)
        self.transform = datamodule.eval_transform()

    @classmethod
    def from_checkpoint(cls, source: str | Path, device: str = "cpu", **architecture: str) -> Self:
        """The predictor of a checkpoint written by `python -m tasks.<task> fit` (a path), or of named published
        weights: `"<name>:<tag>"` (`"ssdlite320_v3_large:coco"`; timm's `"<name>.<tag>"` too) or a bare tag with the
        architecture keywords that pick its model where several have it (`"coco_voc", head="lraspp"`), as
        `from_weights`. A checkpoint that names the weights it was fine-tuned from and records no class names, with
        their class count, takes their categories as class names."""
        found = cls.resolve_source(source, **architecture)
        if isinstance(found, WeightsEntry):
            return cls.from_weights(found, device=device)
        loaded = load_task(cls.task, found, how="tasks.{task}.{predictor}.from_checkpoint")
        saved = loaded.saved_hyper_parameters
        entry = cls.initial_weights(saved)
        names = None
        if entry is not None and not saved.get("class_names") and len(entry.categories) == saved.get("num_classes"):
            names = entry.categories
        return cls(loaded.module, loaded.datamodule_hyper_parameters, device, class_names=names)

    @classmethod
    def from_weights(cls, weights: str | WeightsEntry, tag: str | None = None, *, device: str = "cpu") -> Self:
        """The task model of named published weights, as torchvision's `weights=` and timm's `pretrained=True` give
        it: `Detector.from_weights("ssdlite320_v3_large", "coco")`, `Classifier.from_weights("v3_large")` (the default
        tag, "imagenet"), or a `WeightsEntry` of `backbones.weights.list_weights()`. The file is downloaded (hash
        checked) or taken from torch's hub cache; the predictor applies the entry's preprocessing (mean, std, input
        size) and names classes by its categories."""
        entry = weights if isinstance(weights, WeightsEntry) else cls.weights_entry(weights, tag)
        architecture = cls.architecture_of(entry.name)
        if architecture is None:
            raise ValueError(
                f"weights {entry.name!r} ({entry.tag!r}) are not a {cls.task} model's; {cls.__name__} takes "
                f"{cls.named_weights()}"
            )
        if not entry.categories:
            raise ValueError(
                f"weights {entry.name!r} ({entry.tag!r}) have no categories: register them with categories=[...] "
                "(their class names, in label order), which also sets the class count"
            )
        arguments = {
            **architecture,
            **entry.build_options,
            **cls.weights_hyper_parameters(entry),
            "num_classes": len(entry.categories),
            "class_names": list(entry.categories),
            "weights": entry.tag,
        }
        module = task_classes(cls.task).load_task()(**arguments).eval()
        return cls(module, cls.weights_preprocessing(entry), device, weights=entry)

    @classmethod
    def recorded_preprocessing(cls, hparams: dict[str, Any], datamodule: dict[str, Any]) -> dict[str, Any]:
        """The `preprocessing` arguments: the data module's recorded ones, else the task's same-named
        hyper-parameters (image size, resolution), else left to the data module's defaults."""
        found = {k: hparams[k] for k in cls.preprocessing if k in hparams}
        return found | {k: datamodule[k] for k in cls.preprocessing if k in datamodule}

    # -- named weights -----------------------------------------------------------------------------------------------
    @classmethod
    def weights_name(cls) -> str:
        """The registry name of this task's models, as a format of the task's arguments (the CLI's, one place)."""
        return task_classes(cls.task).load_cli().weights_name

    @classmethod
    def architecture_fields(cls) -> list[str]:
        return [name for _, name, _, _ in string.Formatter().parse(cls.weights_name()) if name]

    @classmethod
    def architecture_of(cls, name: str) -> dict[str, str] | None:
        """The task arguments a registry name stands for (`{"backbone": "v3_large"}` for "ssdlite320_v3_large"), or
        None when it does not name a model of this task."""
        pattern = ""
        for literal, field_name, _, _ in string.Formatter().parse(cls.weights_name()):
            pattern += re.escape(literal)
            if field_name == "backbone":
                pattern += f"(?P<backbone>{'|'.join(map(re.escape, list_backbones()))})"
            elif field_name:
                pattern += f"(?P<{field_name}>[a-z0-9]+)"
        match = re.fullmatch(pattern, name)
        return match.groupdict() if match else None

    @classmethod
    def named_weights(cls) -> list[str]:
        """Every `"<name>:<tag>"` (aliases too) this predictor takes."""
        names = [name for name in weights_names() if cls.architecture_of(name) is not None]
        return [f"{name}:{tag}" for name in names for tag in weights_tags(name)]

    @classmethod
    def weights_entry(cls, name: str, tag: str | None = None) -> WeightsEntry:
        """The entry `tag` of `name`; without a tag, its default ("imagenet") or its only one."""
        if tag is None:
            tags = weights_tags(name)
            tag = DEFAULT_TAG if DEFAULT_TAG in tags or len(tags) != 1 else tags[0]
        return get_weights(name, tag)  # an unknown name or tag: a ValueError listing the valid ones

    @classmethod
    def resolve_source(cls, source: str | Path, **architecture: str) -> Path | WeightsEntry:
        """The checkpoint file `source` is, else the named weights it names; else a FileNotFoundError listing both
        kinds of valid input."""
        fields = cls.architecture_fields()
        unknown = sorted(set(architecture) - set(fields))
        if unknown:
            raise TypeError(f"{cls.__name__}.from_checkpoint: unknown arguments {unknown}; it takes {fields}")
        if Path(source).is_file():
            return Path(source)
        entry = cls._named(source, architecture) if isinstance(source, str) else None
        if entry is not None:
            return entry
        raise FileNotFoundError(
            f"checkpoint {source}: no such file; pass the path of a .ckpt written by `python -m tasks.{cls.task} fit` "
            f"(e.g. <run folder>/checkpoints/last.ckpt), or named weights: {cls.named_weights()}"
            + (f" (with {architecture})" if architecture else "")
        )

    @classmethod
    def _named(cls, source: str, architecture: dict[str, str]) -> WeightsEntry | None:
        """The entry `source` names ("name:tag", or a tag that `architecture` narrows to one model), or None."""
        match = _NAME_TAG.fullmatch(source)
        named = cls.architecture_of(match["name"]) if match else None
        if match and named is not None:
            contradicted = {k: v for k, v in architecture.items() if named[k] != v}
            if contradicted:
                raise ValueError(f"weights {source!r} are for {named}, not {contradicted}")
            return get_weights(match["name"], match["tag"])
        if not _TAG.fullmatch(source):
            return None
        candidates = []
        for name in weights_names():
            found = cls.architecture_of(name)
            if found is not None and source in weights_tags(name) and architecture.items() <= found.items():
                candidates.append(get_weights(name, source))
        if len(candidates) > 1:
            choices = [f"{entry.name}:{source}" for entry in candidates]
            fields = cls.architecture_fields()
            raise ValueError(f"weights {source!r} exist for several models, {choices}: pass {fields} or one of these")
        return candidates[0] if candidates else None

    @classmethod
    def initial_weights(cls, hparams: dict[str, Any]) -> WeightsEntry | None:
        """The named weights (a tag or a registered URL) that task hyper-parameters build their model from."""
        architecture = {name: hparams.get(name) for name in cls.architecture_fields()}
        if hparams.get("weights") is None or None in architecture.values():
            return None
        return find_weights(cls.weights_name().format_map(architecture), hparams["weights"])

    @classmethod
    def weights_hyper_parameters(cls, entry: WeightsEntry) -> dict[str, Any]:
        """Task arguments that the entry's preprocessing sets (e.g. the detector's recorded input size)."""
        return {}

    @classmethod
    def weights_preprocessing(cls, entry: WeightsEntry) -> dict[str, Any]:
        """The entry's preprocessing as the task's data module arguments (`preprocessing`)."""
        return {"mean": entry.mean, "std": entry.std}

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
        _check_batch_size(batch_size)
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

    def predict_video(
        self, source: str | Path, output: str | Path | None = None, batch_size: int = 8
    ) -> VideoPrediction:
        """Every frame of `source`: its result (`stream_video`'s) in `results`, and, with `output` (.mp4, .m4v, .mov:
        mp4v; .avi: MJPG), the frame with its result drawn written there. Frames are held one batch at a time, the
        results all (a segmentation mask per frame: for long videos iterate `stream_video` instead)."""
        _check_batch_size(batch_size)
        properties: dict[str, Any] = {}
        stream = self._stream(*_video_io(source, output), batch_size, properties)
        results = list(stream)
        written = None if output is None else Path(output)
        return VideoPrediction(written, len(results), properties["fps"], properties["size"], results)

    def stream_video(
        self, source: str | Path, output: str | Path | None = None, batch_size: int = 8
    ) -> Iterator[dict[str, Any]]:
        """Per frame of `source`, in order, as it is computed: `predict`'s result for it with `frame` (its index from
        0) and `time` (seconds, frame / the video's rate); with `output`, each frame is also written there with its
        result drawn (as `predict_video`). One batch of frames is held at a time."""
        _check_batch_size(batch_size)
        return self._stream(*_video_io(source, output), batch_size, {})

    def _stream(
        self, capture: cv2.VideoCapture, source: Path, output: Path | None, batch_size: int, properties: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        fps = float(capture.get(cv2.CAP_PROP_FPS) or DEFAULT_FPS)
        properties.update(fps=fps, size=(0, 0))
        writer: cv2.VideoWriter | None = None
        index = 0
        try:
            for batch in _batches(_frames(capture), batch_size):
                for frame, result in zip(batch, self.predict_arrays(batch), strict=True):
                    if index == 0:
                        properties["size"] = (frame.shape[1], frame.shape[0])
                    if output is not None:
                        if writer is None:
                            writer = _open_writer(output, fps, properties["size"])
                        writer.write(cv2.cvtColor(self.annotate(frame, result), cv2.COLOR_RGB2BGR))
                    yield {**result, "frame": index, "time": index / fps}
                    index += 1
        finally:
            capture.release()
            if writer is not None:
                writer.release()
        if index == 0:
            raise ValueError(f"video {source}: no frame could be read")


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")


def _video_io(source: str | Path, output: str | Path | None) -> tuple[cv2.VideoCapture, Path, Path | None]:
    """The opened video and the checked output path, checked before any frame is read."""
    source = Path(source)
    if output is not None:
        output = Path(output)
        if output.suffix.lower() not in VIDEO_CODECS:
            raise ValueError(f"output {output}: the video suffix must be one of {list(VIDEO_CODECS)}")
    return _open_video(source), source, output


def _open_writer(output: Path, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
    codec = VIDEO_CODECS[output.suffix.lower()]
    output.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(output), cv2.VideoWriter_fourcc(*codec), fps, size)
    if not writer.isOpened():
        raise OSError(f"output {output}: OpenCV cannot write {codec} video here")
    return writer


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
