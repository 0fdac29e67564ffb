"""What the runner reads from a model file's metadata (`deploy.metadata`), checked once when the file is loaded.

`read_contract` turns the metadata into a `Contract`: the task, how images become the network input (size, resize,
interpolation, padding fill, batch), the class names and the post-processing, so that a file the runner cannot
follow fails at `load` with the file named, not on the first image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2

from deploy.metadata import MetadataError

# how each task's images may reach its network (`input.resize`)
# (segmentation files of runtimes without dynamic sizes are "stretch": S x S, the mask resized back)
TASK_RESIZES = {"detect": ("stretch", "letterbox"), "segment": ("none", "stretch"), "classify": ("shorter_side_crop",)}
# OpenCV's flag for each `input.interpolation`; the classification transforms resize with these too
# (tasks/classify/data/transforms.py)
INTERPOLATIONS = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}
# the outputs each task's runner reads; detection's depend on where its NMS runs (`postprocess.nms`)
TASK_OUTPUTS = {
    ("detect", "inside"): ("detections", "num_detections"),
    ("detect", "runner"): ("scores", "boxes"),
    ("segment", None): ("mask",),
    ("classify", None): ("probabilities",),
}
# the SSDLite post-processing the runner does itself where the file has no NMS (`postprocess.nms == "runner"`)
RUNNER_NMS_KEYS = ("score_threshold", "iou_threshold", "candidates_per_class", "max_detections")


@dataclass(frozen=True)
class Contract:
    """A model file's task, input and class names, as the runner applies them (see `deploy.metadata`)."""

    task: str
    model: str
    resize: str
    size: tuple[int, int] | None  # (H, W) of the network input; None: each image at its own size
    resize_side: int | None  # shorter_side_crop: the shorter side before the centre crop
    interpolation: int  # OpenCV's flag
    pad_value: tuple[float, float, float]  # letterbox: the fill of the bottom/right padding, 0..255
    batch: int | None  # a fixed batch size, or None: any
    class_names: list[str]
    category_ids: list[int] | None
    postprocess: dict[str, Any] = field(default_factory=dict)

    @property
    def nms(self) -> str | None:
        """Where a detector's NMS runs: "inside" the file or in the "runner"; None for the other tasks."""
        return str(self.postprocess.get("nms", "inside")) if self.task == "detect" else None

    @property
    def outputs(self) -> tuple[str, ...]:
        """The output names the runner reads from the file."""
        return TASK_OUTPUTS[(self.task, self.nms)]


def read_contract(metadata: dict[str, Any], source: str | Path) -> Contract:
    """The contract of the metadata read from `source`; a MetadataError naming `source` where it is not followable."""
    task = metadata["task"]
    image = metadata.get("input")
    names = metadata.get("class_names")
    if not isinstance(image, dict) or not isinstance(names, list) or not names:
        raise MetadataError(f"{source}: its metadata lacks `input` or `class_names`; re-export the model")
    _check(image.get("name", "images") == "images" and image.get("dtype", "uint8") == "uint8", source, "input", image)
    _check(image.get("normalization", "inside") == "inside", source, "input.normalization", image)
    resize = image.get("resize")
    _check(resize in TASK_RESIZES[task], source, "input.resize", resize, f"one of {TASK_RESIZES[task]} for {task}")
    size = image.get("size")
    if size is not None:
        _check(_is_pair_of_positive_ints(size), source, "input.size", size, "[H, W] or null")
        size = (int(size[0]), int(size[1]))
    _check(size is not None or resize == "none", source, "input.size", size, f"[H, W] for resize {resize!r}")
    _check(resize != "letterbox" or size[0] == size[1], source, "input.size", size, "square for a letterbox")
    side = image.get("resize_side")
    if resize == "shorter_side_crop":
        _check(isinstance(side, int) and side >= max(size), source, "input.resize_side", side, ">= the crop size")
    interpolation = image.get("interpolation", "bilinear")
    _check(interpolation in INTERPOLATIONS, source, "input.interpolation", interpolation, str(list(INTERPOLATIONS)))
    batch = image.get("batch", "dynamic")
    _check(batch == "dynamic" or (isinstance(batch, int) and batch >= 1), source, "input.batch", batch)
    postprocess = metadata.get("postprocess") or {}
    if task == "detect":
        nms = postprocess.get("nms", "inside")
        _check(nms in ("inside", "runner"), source, "postprocess.nms", nms, '"inside" or "runner"')
        missing = [key for key in RUNNER_NMS_KEYS if key not in postprocess]
        _check(nms == "inside" or not missing, source, "postprocess", postprocess, f"with {list(RUNNER_NMS_KEYS)}")
    return Contract(
        task=task,
        model=str(metadata.get("model", "?")),
        resize=resize,
        size=size,
        resize_side=side,
        interpolation=INTERPOLATIONS[interpolation],
        pad_value=_pad_value(image),
        batch=None if batch == "dynamic" else batch,
        class_names=[str(name) for name in names],
        category_ids=metadata.get("category_ids"),
        postprocess=dict(postprocess),
    )


def _pad_value(image: dict[str, Any]) -> tuple[float, float, float]:
    """The letterbox fill: `pad_value`, else the mean in 0..255 (as the training transform fills)."""
    value = image.get("pad_value") or [255.0 * m for m in image.get("mean", (0.0, 0.0, 0.0))]
    red, green, blue = (float(v) for v in value)
    return red, green, blue


def _is_pair_of_positive_ints(value: Any) -> bool:
    return isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value)


def _check(ok: bool, source: str | Path, key: str, value: Any, valid: str = "") -> None:
    if not ok:
        expected = f" (expected {valid})" if valid else ""
        raise MetadataError(f"{source}: metadata {key} = {value!r} is not supported{expected}; re-export the model")
