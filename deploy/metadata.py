"""What an exported file carries for whoever runs it: one JSON object under one key, read without torch.

ONNX keeps it in the model's `metadata_props`, OpenVINO in the IR's `rt_info`, and formats without metadata
(TorchScript, ExecuTorch, LiteRT) in a JSON file beside the model (`<model file>.json`). The same object in all of
them:

    {
      "format": 1,                      # this layout's version
      "task": "detect" | "segment" | "classify",
      "model": "ssdlite320_v3_large",   # the registered model name (`tasks.list_models`)
      "input": {
        "name": "images", "dtype": "uint8", "layout": "NCHW", "color": "RGB",
        "size": [H, W] or null,         # null: any size (segmentation runs each image at its own size)
        "resize": "stretch" | "letterbox" | "shorter_side_crop" | "none",
        "resize_side": int,             # shorter_side_crop: the shorter side before the centre crop to `size`
        "interpolation": "bilinear" | "bicubic",
        "pad_value": [r, g, b],         # letterbox: the fill of the bottom/right padding, 0..255
        "normalization": "inside",      # mean/std are applied inside the graph, on 0..1 pixels
        "mean": [r, g, b], "std": [r, g, b],
        "batch": "dynamic" | int
      },
      "outputs": ["detections", "num_detections"],
      "class_names": [...],             # by class index (detection: index 0 is the background)
      "category_ids": [...],            # detection: the dataset's category id of each class index (COCO's ids)
      "postprocess": {...}              # the task's: detection {"nms": "inside" | "runner", "score_threshold",
                                        #   "iou_threshold", "candidates_per_class", "max_detections"}
    }

This module imports only the standard library: `deploy.run` (no torch) reads what `deploy.runtimes` writes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

KEY = "mobilenet_suite"  # the metadata_props / rt_info key
FORMAT = 1
TASKS = ("detect", "segment", "classify")
RESIZES = ("stretch", "letterbox", "shorter_side_crop", "none")


class MetadataError(ValueError):
    """A model file without our metadata, or with metadata this version cannot read."""


def encode(metadata: dict[str, Any]) -> str:
    """The metadata as the one JSON string every format stores."""
    return json.dumps({"format": FORMAT, **metadata}, sort_keys=True)


def decode(text: str | None, source: str | Path) -> dict[str, Any]:
    """The metadata stored as `text` in `source` (named in errors); a MetadataError when it is missing or not ours."""
    if text is None:
        raise MetadataError(
            f"{source}: no {KEY!r} metadata: this file was not exported by `python -m tasks.<task> export` "
            "(export the checkpoint with it to get a file that carries its task, input and class names)"
        )
    try:
        metadata = json.loads(text)
    except json.JSONDecodeError as error:
        raise MetadataError(f"{source}: its {KEY!r} metadata is not JSON ({error})") from error
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT or metadata.get("task") not in TASKS:
        raise MetadataError(
            f"{source}: its {KEY!r} metadata is not format {FORMAT} with a task of {TASKS}; re-export the model"
        )
    return metadata


def sidecar_path(model_path: str | Path) -> Path:
    """Where formats without metadata keep it: `model.pte` -> `model.pte.json`."""
    path = Path(model_path)
    return path.with_name(path.name + ".json")


def write_sidecar(model_path: str | Path, metadata: dict[str, Any]) -> Path:
    path = sidecar_path(model_path)
    path.write_text(encode(metadata) + "\n")
    return path


def read_sidecar(model_path: str | Path) -> dict[str, Any]:
    path = sidecar_path(model_path)
    return decode(path.read_text() if path.is_file() else None, model_path)
