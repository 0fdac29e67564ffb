"""A batch's outputs -> one result per image, with the keys and meaning of the Python predictors' results, as numpy
arrays and lists instead of tensors.

- detect: `boxes` float32 [M, 4] (x1, y1, x2, y2 in the image's own pixels: input pixels times the scale, then x
  clamped to [0, W], y to [0, H], as `tasks.detect.model.to_original_coordinates`), `scores` float32 [M], `labels`
  int64 [M], `names` (`tasks.detect.predictor.detections`);
- segment: `mask` int64 [H, W], the `labels` present (sorted) and their `names` (`tasks.segment.predictor.masks`);
  a file of one fixed size (runtimes without dynamic sizes) gets the image stretched to it, and its mask is resized
  back to the image, nearest neighbour (OpenCV's INTER_NEAREST_EXACT: the pixel centres', as Pillow's);
- classify: the TOP_K most probable `labels`, their `scores` and `names`, best first
  (`tasks.classify.predictor.top_classes`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np

from deploy.run.contract import Contract
from deploy.run.nms import ssdlite_detections

TOP_K = 5  # classes per classified image, in results and predictions.csv (the classification task's too)

Outputs = dict[str, np.ndarray]
Metas = Sequence[dict[str, Any]]


def in_input_pixels(outputs: Outputs, contract: Contract) -> list[dict[str, np.ndarray]]:
    """Per image its detections (`boxes`, `scores`, `labels`) in network-input pixels: the file's own (rows up to
    `num_detections`), or SSDLite's post-processing of its `scores` and `boxes` where the file has no NMS."""
    if contract.nms == "runner":
        return [
            ssdlite_detections(s, b, contract.postprocess)
            for s, b in zip(outputs["scores"], outputs["boxes"], strict=True)
        ]
    found = []
    for rows, count in zip(outputs["detections"], outputs["num_detections"], strict=True):
        rows = rows[: int(count)].astype(np.float32)
        labels = np.rint(rows[:, 5]).astype(np.int64)
        found.append({"boxes": rows[:, :4], "scores": rows[:, 4], "labels": labels})
    return found


def detections(outputs: Outputs, metas: Metas, contract: Contract) -> list[dict[str, Any]]:
    """Per image: `boxes` in its own pixels, clamped to it, `scores`, `labels`, `names`."""
    results = []
    for found, meta in zip(in_input_pixels(outputs, contract), metas, strict=True):
        boxes = found["boxes"] * np.tile(meta["scale"], 2)
        height, width = meta["orig_size"]
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
        labels = found["labels"]
        names = [contract.class_names[int(label)] for label in labels]
        results.append({"boxes": boxes, "scores": found["scores"], "labels": labels, "names": names})
    return results


def masks(outputs: Outputs, metas: Metas, contract: Contract) -> list[dict[str, Any]]:
    """Per image: its `mask` (at the image's size), the `labels` in it and their `names`."""
    results = []
    for mask, meta in zip(outputs["mask"], metas, strict=True):
        height, width = meta["orig_size"]
        if mask.shape != (height, width):  # a stretched input's
            mask = cv2.resize(mask.astype(np.int32), (width, height), interpolation=cv2.INTER_NEAREST_EXACT)
        mask = mask.astype(np.int64)
        labels = np.unique(mask).tolist()
        results.append({"mask": mask, "labels": labels, "names": [contract.class_names[i] for i in labels]})
    return results


def top_classes(outputs: Outputs, metas: Metas, contract: Contract) -> list[dict[str, Any]]:
    """Per image: its TOP_K most probable `labels`, their `scores` (probabilities) and `names`, best first."""
    probabilities = outputs["probabilities"].astype(np.float32)
    k = min(TOP_K, probabilities.shape[1])
    results = []
    for row in probabilities:
        labels = np.argsort(-row, kind="stable")[:k].tolist()
        scores = [float(row[i]) for i in labels]
        results.append({"labels": labels, "scores": scores, "names": [contract.class_names[i] for i in labels]})
    return results


RESULTS: dict[str, Callable[[Outputs, Metas, Contract], list[dict[str, Any]]]] = {
    "detect": detections,
    "segment": masks,
    "classify": top_classes,
}
