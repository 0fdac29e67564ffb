"""The predictor base of every task: a trained checkpoint of ours, or named published weights, applied to raw
images, videos and folders.

`Predictor.from_checkpoint(path)` loads the task's LightningModule through its own `load_from_checkpoint`
(`task_checkpoint.load_task`, which `export` uses too), folds batch norm once (`backbones.fuse.fuse`) and builds the
data module's own evaluation transform from the preprocessing the checkpoint records (`datamodule_hyper_parameters`,
else the task's hyper-parameters, else the data module's defaults). `Predictor.from_weights(name, tag)` (or
`from_checkpoint("name:tag")`) builds the task model of an entry of `backbones.weights` (downloaded, hash checked,
into torch's hub cache) and takes the entry's preprocessing (mean, std, input size) and categories (class names).
`compile=True` runs the folded network through `torch.compile` (`tasks.common.compile.compiled`): the first call of
each input shape compiles, later ones run the compiled program.
`predict(images)` takes file paths, folders, PIL images, H x W x 3 uint8 arrays and (3, H, W) tensors (uint8, or
float in 0..1) of any size, mixed, and returns one result per image in that image's own pixels, with class names.
`predict_video(path, output)` returns one result per frame and writes an annotated copy of the video;
`stream_video` yields the frames' results one at a time. `python -m tasks.<task> predict` goes through the same
task functions: `predict_step` calls the predictor's post-processing, the writers its drawing.

A task's predictor sets `task` (a registered task's name, `tasks.registry`), `preprocessing` (the data module
arguments its evaluation transform reads) and implements `prepare` (image -> network input and meta),
`postprocess` (network output and metas -> results) and `annotate` (image and result -> drawn image);
`weights_preprocessing` and `weights_hyper_parameters` map a weights entry's preprocessing onto its data module and
task arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from backbones.fuse import fuse
from backbones.weights import WeightsEntry
from deploy.run.video import batches_of, frame_rate, read_frames
from tasks.common.compile import compiled
from tasks.common.inputs import ImageInput, expand_inputs, rgb_array
from tasks.common.named_weights import default_entry, initial_weights, model_arguments, named_weights, resolve_source
from tasks.common.task_checkpoint import load_task
from tasks.common.video import VideoPrediction, open_video_io, open_writer
from tasks.registry import get_task


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
        compile: bool = False,
    ) -> None:
        """`weights`: the named weights `module` was built from (`from_weights`), whose preprocessing the predictor
        applies; `class_names`: instead of the module's; `compile`: run the network through `torch.compile`."""
        self.device = torch.device(device)
        self.weights = weights
        self.class_names: list[str] = list(module.class_names if class_names is None else class_names)
        self.hparams = dict(module.hparams)
        self.model: nn.Module = fuse(module.model).eval().to(self.device)
        self.network: Callable[..., Any] = compiled(self.model) if compile else self.model  # what predict runs
        self.preprocessing_arguments = self.recorded_preprocessing(self.hparams, datamodule_hyper_parameters or {})
        datamodule = get_task(self.task).datamodule(**self.preprocessing_arguments, num_workers=0)
        self.transform = datamodule.eval_transform()

    @classmethod
    def from_checkpoint(
        cls, source: str | Path, device: str = "cpu", *, compile: bool = False, **architecture: str
    ) -> Self:
        """The predictor of a checkpoint written by `python -m tasks.<task> fit` (a path), or of named published
        weights: `"<name>:<tag>"` (`"ssdlite320_v3_large:coco"`; timm's `"<name>.<tag>"` too) or a bare tag with the
        architecture keywords that pick its model where several have it (`"coco_voc", head="lraspp"`), as
        `from_weights`. A checkpoint that names the weights it was fine-tuned from and records no class names, with
        their class count, takes their categories as class names."""
        found = cls.resolve_source(source, **architecture)
        if isinstance(found, WeightsEntry):
            return cls.from_weights(found, device=device, compile=compile)
        loaded = load_task(cls.task, found, how="tasks.{task}.{predictor}.from_checkpoint")
        saved = loaded.saved_hyper_parameters
        entry = initial_weights(cls.task, saved)
        names = None
        if entry is not None and not saved.get("class_names") and len(entry.categories) == saved.get("num_classes"):
            names = entry.categories
        return cls(loaded.module, loaded.datamodule_hyper_parameters, device, class_names=names, compile=compile)

    @classmethod
    def from_weights(
        cls, weights: str | WeightsEntry, tag: str | None = None, *, device: str = "cpu", compile: bool = False
    ) -> Self:
        """The task model of named published weights, as torchvision's `weights=` and timm's `pretrained=True` give
        it: `Detector.from_weights("ssdlite320_v3_large", "coco")`, `Classifier.from_weights("v3_large")` (the default
        tag, "imagenet"), or a `WeightsEntry` of `backbones.weights.list_weights()`. The file is downloaded (hash
        checked) or taken from torch's hub cache; the predictor applies the entry's preprocessing (mean, std, input
        size) and names classes by its categories."""
        entry = weights if isinstance(weights, WeightsEntry) else cls.weights_entry(weights, tag)
        architecture = model_arguments(cls.task, entry.name)
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
        module = get_task(cls.task).module(**arguments).eval()
        return cls(module, cls.weights_preprocessing(entry), device, weights=entry, compile=compile)

    @classmethod
    def recorded_preprocessing(cls, hparams: dict[str, Any], datamodule: dict[str, Any]) -> dict[str, Any]:
        """The `preprocessing` arguments: the data module's recorded ones, else the task's same-named
        hyper-parameters (image size, resolution), else left to the data module's defaults."""
        found = {k: hparams[k] for k in cls.preprocessing if k in hparams}
        return found | {k: datamodule[k] for k in cls.preprocessing if k in datamodule}

    # -- named weights (`named_weights.py`) ------------------------------------------------------------------------
    @classmethod
    def named_weights(cls) -> list[str]:
        """Every `"<name>:<tag>"` (aliases too) this predictor takes."""
        return named_weights(cls.task)

    @classmethod
    def weights_entry(cls, name: str, tag: str | None = None) -> WeightsEntry:
        """The entry `tag` of `name`; without a tag, its default ("imagenet") or its only one."""
        return default_entry(name, tag)

    @classmethod
    def resolve_source(cls, source: str | Path, **architecture: str) -> Path | WeightsEntry:
        """The checkpoint file `source` is, else the named weights it names (`named_weights.resolve_source`)."""
        return resolve_source(cls.task, source, **architecture)

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
                outputs = self.network(batch)
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
        stream = self._stream(*open_video_io(source, output), batch_size, properties)
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
        return self._stream(*open_video_io(source, output), batch_size, {})

    def _stream(
        self, capture: cv2.VideoCapture, source: Path, output: Path | None, batch_size: int, properties: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        fps = frame_rate(capture)
        properties.update(fps=fps, size=(0, 0))
        writer: cv2.VideoWriter | None = None
        index = 0
        try:
            for batch in batches_of(read_frames(capture), batch_size):
                for frame, result in zip(batch, self.predict_arrays(batch), strict=True):
                    if index == 0:
                        properties["size"] = (frame.shape[1], frame.shape[0])
                    if output is not None:
                        if writer is None:
                            writer = open_writer(output, fps, properties["size"])
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
