"""`Segmenter`: a trained DeepLabV3 / LR-ASPP checkpoint on raw images, a class-index mask at each image's size.

    segmenter = Segmenter.from_checkpoint("lightning_logs/version_0/checkpoints/last.ckpt")
    results = segmenter.predict(["a.jpg", uint8_array])  # [{mask [H, W] int64, labels, names}, ...]

Images stay at their own size and are normalised with the checkpoint's mean and std (`SegmentationEvalTransform`);
the network's logits come back at the input size, and the mask is their argmax, cropped to the image (a batch of
the predict CLI may be padded). `SegmentationTask.predict_step` uses `masks` below, and the writer
`SegmentationPredictionWriter` and `predict_video` draw with `overlay_mask`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image
from torch import Tensor

from tasks.common.drawing import overlay_mask
from tasks.common.predictor import Predictor

OVERLAY_ALPHA = 0.5  # weight of the class colours in a drawn overlay


def masks(logits: Tensor, metas: Sequence[dict[str, Any]], class_names: Sequence[str]) -> list[dict[str, Any]]:
    """Logits [N, C, h, w] at the input size -> per image `mask` (int64 [H, W] on the CPU, its own size), and the
    `labels` present in it with their `names`."""
    results = []
    for mask, meta in zip(logits.argmax(1).cpu(), metas, strict=True):
        height, width = (int(v) for v in meta["orig_size"])
        mask = mask[:height, :width]
        labels = mask.unique().tolist()
        results.append({"mask": mask, "labels": labels, "names": [class_names[label] for label in labels]})
    return results


class Segmenter(Predictor):
    """A segmentation checkpoint: `predict(images)` -> per image {mask, labels, names} (see the module docstring);
    `predict_video` blends the class colours into each frame."""

    task = "segment"
    preprocessing = ("mean", "std")

    def prepare(self, image: np.ndarray) -> tuple[Tensor, dict[str, Any]]:
        tensor, _ = self.transform(image)
        return tensor, {"orig_size": (int(image.shape[0]), int(image.shape[1]))}

    def postprocess(self, outputs: Tensor, metas: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        return masks(outputs, metas, self.class_names)

    def annotate(self, image: np.ndarray, result: dict[str, Any]) -> np.ndarray:
        return np.asarray(overlay_mask(Image.fromarray(image), result["mask"].numpy(), OVERLAY_ALPHA))
