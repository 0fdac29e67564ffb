"""`Detector`: a trained SSDLite checkpoint on raw images of any size, boxes in each image's own pixels.

    detector = Detector.from_checkpoint("lightning_logs/version_0/checkpoints/last.ckpt")
    results = detector.predict(["a.jpg", pil_image, uint8_array, tensor])  # [{boxes, scores, labels, names}, ...]
    coco = Detector.from_weights("ssdlite320_v3_large", "coco")  # torchvision's, COCO's 91 names, 320 px, 0.5/0.5

Images go through the data module's evaluation transform with the checkpoint's image size, letterbox, mean and std
(`DetectionTransform`); boxes come back through `to_original_coordinates`. `DetectionTask.predict_step` and
`DetectionPredictionWriter` use `detections` and `draw_detections` below, so `python -m tasks.detect predict`
gives the same boxes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from backbones.weights.registry import WeightsEntry
from deploy.run.drawing import DRAW_SCORE_THRESHOLD, caption
from tasks.common.drawing import draw_boxes
from tasks.common.predictor import Predictor
from tasks.detect.model import to_original_coordinates


def prepare_detection_input(transform: Any, image: np.ndarray) -> tuple[Tensor, dict[str, Any]]:
    """uint8 RGB [H, W, 3] -> (normalised [3, S, S], meta {orig_size (H, W), scale (sx, sy)}), as predict items."""
    tensor, _, _, scale = transform(image)
    height, width = image.shape[:2]
    return tensor, {"orig_size": torch.tensor([height, width], dtype=torch.int64), "scale": scale}


def detections(
    outputs: list[dict[str, Tensor]], metas: Sequence[dict[str, Any]], class_names: Sequence[str]
) -> list[dict[str, Any]]:
    """The detector's output for a batch -> per image `boxes` (x1 y1 x2 y2 in its own pixels, clipped), `scores`,
    `labels` (on the CPU) and `names` (the labels' class names)."""
    mapped = to_original_coordinates(outputs, [m["scale"] for m in metas], [m["orig_size"] for m in metas])
    results = []
    for detection in mapped:
        labels = detection["labels"].cpu()
        results.append(
            {
                "boxes": detection["boxes"].cpu(),
                "scores": detection["scores"].cpu(),
                "labels": labels,
                "names": [class_names[int(label)] for label in labels],
            }
        )
    return results


def draw_detections(
    pixels: Tensor, detection: dict[str, Any], class_names: Sequence[str], score_threshold: float
) -> tuple[Tensor, int]:
    """uint8 [3, H, W] with the detections scoring >= `score_threshold` drawn and captioned; and how many."""
    boxes, scores, labels = detection["boxes"], detection["scores"], detection["labels"]
    shown = scores >= score_threshold
    if not shown.any():  # torchvision warns on an empty box list
        return pixels, 0
    kept = zip(labels[shown].tolist(), scores[shown].tolist(), strict=True)
    captions = [caption(class_names[label], score) for label, score in kept]
    return draw_boxes(pixels, boxes[shown], labels[shown].tolist(), captions), int(shown.sum())


class Detector(Predictor):
    """SSDLite from a checkpoint or named weights (`from_checkpoint("coco", backbone="v3_large")`): `predict(images)`
    -> per image {boxes, scores, labels, names} (see the module docstring); `predict_video` draws the detections
    scoring >= `draw_score_threshold`."""

    task = "detect"
    preprocessing = ("image_size", "keep_aspect_ratio", "mean", "std")
    draw_score_threshold = DRAW_SCORE_THRESHOLD

    @classmethod
    def weights_hyper_parameters(cls, entry: WeightsEntry) -> dict[str, Any]:
        return {"image_size": entry.image_size}

    @classmethod
    def weights_preprocessing(cls, entry: WeightsEntry) -> dict[str, Any]:
        # torchvision's SSDLite resizes to S x S, not keeping the aspect ratio
        return {"image_size": entry.image_size, "keep_aspect_ratio": False, "mean": entry.mean, "std": entry.std}

    def prepare(self, image: np.ndarray) -> tuple[Tensor, dict[str, Any]]:
        return prepare_detection_input(self.transform, image)

    def postprocess(self, outputs: list[dict[str, Tensor]], metas: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        return detections(outputs, metas, self.class_names)

    def annotate(self, image: np.ndarray, result: dict[str, Any]) -> np.ndarray:
        pixels = torch.from_numpy(image).permute(2, 0, 1)
        drawn, _ = draw_detections(pixels, result, self.class_names, self.draw_score_threshold)
        return drawn.permute(1, 2, 0).numpy()
