"""End-to-end exports: what a runtime user feeds in (uint8 RGB pixels) and gets out (detections, a class mask,
probabilities), with the normalisation and the task's post-processing inside the file, and the metadata
(`deploy.metadata`) that says how to resize the images and what the class indices mean.

Each task's `end_to_end(checkpoint, size, nms, **options)` (`tasks/<task>/end_to_end.py`, named by its
`TaskSpec`) returns an `EndToEnd`: the module to export, its output names, its metadata and how the export check
compares its outputs with the PyTorch module's. The data module the checkpoint records gives the preprocessing
(its evaluation transform's), so the file and `Predictor.predict` see the same pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from deploy.runtimes import INPUT_NAME, Loaded
from tasks.common.task_checkpoint import TaskCheckpoint
from tasks.models import model_name
from tasks.registry import get_task

# the scopes int8 keeps in float in every end-to-end file, beside the task's own: the pixels' normalisation (uint8
# steps already) and the post-processing (scores near the threshold, NMS)
END_TO_END_FLOAT_SCOPES = ("/normalize/", "/postprocess/")

# (file outputs, PyTorch outputs, input side) -> ({output: difference}, {output: tolerance}); see `max_abs_diff`
Compare = Callable[[Sequence[Tensor], Sequence[Tensor], int], tuple[dict[str, float], dict[str, float]]]


class Normalize(nn.Module):
    """uint8 RGB pixels [N, 3, H, W] -> float32 (x - 255 mean) / (255 std): the data modules' `A.Normalize`."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("offset", torch.tensor(mean, dtype=torch.float32).reshape(1, 3, 1, 1) * 255)
        self.register_buffer("scale", 1 / (torch.tensor(std, dtype=torch.float32).reshape(1, 3, 1, 1) * 255))

    def forward(self, images: Tensor) -> Tensor:
        return (images.float() - self.offset) * self.scale


def pixels(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """Normalised images back to the uint8 pixels they came from (rounded: `Normalize` is affine in them)."""
    mean_ = torch.tensor(mean).reshape(1, 3, 1, 1)
    std_ = torch.tensor(std).reshape(1, 3, 1, 1)
    return ((images * std_ + mean_) * 255).round().clamp(0, 255).to(torch.uint8)


class PixelInput(Loaded):
    """An end-to-end file run on the normalised images the data modules give (turned back into their pixels), as
    the task's evaluation of exported files feeds them."""

    def __init__(self, loaded: Loaded, mean: Sequence[float], std: Sequence[float]) -> None:
        self.loaded, self.mean, self.std = loaded, mean, std

    def run(self, images: Tensor | np.ndarray) -> list[Tensor]:
        return self.loaded.run(pixels(torch.as_tensor(images), self.mean, self.std))


def max_abs_diff(names: Sequence[str], tolerances: Sequence[float]) -> Compare:
    """Compare each output by its largest absolute difference, against its tolerance."""

    def compare(got: Sequence[Tensor], want: Sequence[Tensor], size: int) -> tuple[dict[str, float], dict[str, float]]:
        diffs = {
            name: float((g.double() - w.double()).abs().max()) for name, g, w in zip(names, got, want, strict=True)
        }
        return diffs, dict(zip(names, tolerances, strict=True))

    return compare


@dataclass
class EndToEnd:
    """An end-to-end module (uint8 `INPUT_NAME` in) with its output names, metadata and output comparison;
    `any_size`: it takes any height and width (segmentation), which the export makes dynamic axes."""

    module: nn.Module
    outputs: tuple[str, ...]
    metadata: dict[str, Any]
    compare: Compare
    any_size: bool = False

    @property
    def mean(self) -> list[float]:
        """The normalisation inside, as the metadata records it (pixels in 0..1)."""
        return self.metadata["input"]["mean"]

    @property
    def std(self) -> list[float]:
        return self.metadata["input"]["std"]


def base_metadata(
    checkpoint: TaskCheckpoint,
    class_names: Sequence[str],
    input_spec: dict[str, Any],
    outputs: Sequence[str],
    postprocess: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The metadata every task writes (`deploy.metadata`'s layout); `input_spec` is the task's resize part."""
    hparams = dict(checkpoint.hparams)
    architecture = {k: hparams[k] for k in ("backbone", "head") if k in hparams}
    try:
        name = model_name(checkpoint.task, **architecture)
    except ValueError:  # a model no registered name builds (a custom head option): its backbone names it
        name = str(hparams.get("backbone"))
    return {
        "task": checkpoint.task,
        "model": name,
        "input": {
            "name": INPUT_NAME,
            "dtype": "uint8",
            "layout": "NCHW",
            "color": "RGB",
            "normalization": "inside",
            "batch": "dynamic",
            **input_spec,
        },
        "outputs": list(outputs),
        "class_names": list(class_names),
        "postprocess": postprocess or {},
    }


def recorded_datamodule(checkpoint: TaskCheckpoint) -> Any:
    """The checkpoint's data module (its evaluation transform's settings), else the task's with its defaults and the
    checkpoint's own preprocessing hyper-parameters (the predictors' `recorded_preprocessing`)."""
    datamodule = checkpoint.datamodule()
    if datamodule is not None:
        return datamodule
    from_task = {k: v for k, v in dict(checkpoint.hparams).items() if k in ("image_size", "resolution")}
    return get_task(checkpoint.task).datamodule(**from_task, num_workers=0)
