"""`Classifier`: a trained MobileNet classifier checkpoint on raw images of any size, its top-k classes.

    classifier = Classifier.from_checkpoint("lightning_logs/version_0/checkpoints/last.ckpt")
    results = classifier.predict(["a.jpg", pil_image])  # [{labels, scores, names} (best first, k of each), ...]
    imagenet = Classifier.from_weights("v3_large")  # its "imagenet" weights, with their crop and ImageNet's names

Images go through the data module's evaluation transform with the checkpoint's resolution, crop_pct, interpolation,
mean and std (`ClassificationEvalTransform`: shorter side to R / crop_pct, centre crop R); named weights set R to
their crop size, crop_pct so that the shorter side is their resize size, and their interpolation.
`ClassificationTask.predict_step` uses `top_classes` below, so `python -m tasks.classify predict` ranks the same
classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import Tensor

from backbones.weights.registry import WeightsEntry
from deploy.run.drawing import caption, draw_caption
from deploy.run.results import TOP_K
from tasks.classify.crop import weights_crop_pct
from tasks.common.predictor import Predictor


def top_classes(logits: Tensor, k: int, class_names: Sequence[str]) -> list[dict[str, Any]]:
    """Logits [N, K] -> per image the `k` most probable `labels`, their softmax `scores` and `names`, best first."""
    scores, labels = logits.softmax(1).topk(min(k, logits.shape[1]), dim=1)
    return [
        {"labels": label.tolist(), "scores": score.tolist(), "names": [class_names[i] for i in label.tolist()]}
        for label, score in zip(labels.cpu(), scores.cpu(), strict=True)
    ]


class Classifier(Predictor):
    """A classification checkpoint: `predict(images)` -> per image its `top_k` classes (see the module docstring);
    `predict_video` writes the top class and its score on each frame."""

    task = "classify"
    preprocessing = ("resolution", "crop_pct", "interpolation", "mean", "std")
    top_k = TOP_K

    @classmethod
    def weights_hyper_parameters(cls, entry: WeightsEntry) -> dict[str, Any]:
        return {"resolution": entry.image_size}

    @classmethod
    def weights_preprocessing(cls, entry: WeightsEntry) -> dict[str, Any]:
        return {
            "resolution": entry.image_size,
            "crop_pct": weights_crop_pct(entry),
            "interpolation": entry.interpolation,
            "mean": entry.mean,
            "std": entry.std,
        }

    def prepare(self, image: np.ndarray) -> tuple[Tensor, dict[str, Any]]:
        return self.transform(image), {}

    def postprocess(self, outputs: Tensor, metas: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        return top_classes(outputs, self.top_k, self.class_names)

    def annotate(self, image: np.ndarray, result: dict[str, Any]) -> np.ndarray:
        return draw_caption(image, caption(result["names"][0], result["scores"][0]))
