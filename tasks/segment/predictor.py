"""`Segmenter`: a trained DeepLabV3 / LR-ASPP checkpoint on raw images, a class-index mask at each image's size.

    segmenter = Segmenter.from_checkpoint("lightning_logs/version_0/checkpoints/last.ckpt")
    results = segmenter.predict(["a.jpg", uint8_array])  # [{mask [H, W] int64, labels, names}, ...]
    voc = Segmenter.from_checkpoint("coco_voc", head="lraspp", backbone="v3_large")  # torchvision's, VOC's 21 names

Images from a checkpoint stay at their own size and are normalised with the checkpoint's mean and std
(`SegmentationEvalTransform`); the network's logits come back at the input size, and the mask is their argmax,
cropped to the image (a batch of the predict CLI may be padded). Named weights that were evaluated at a shorter side
of `resize_size` (torchvision's 520) get it, as their published transform does (bilinear, PIL's antialiasing), and
their logits are brought back to the image's size (bilinear) before the argmax. `SegmentationTask.predict_step` uses
`masks` below, and the writer `SegmentationPredictionWriter` and `predict_video` draw with `overlay_mask`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from deploy.run.drawing import overlay_mask
from tasks.common.predictor import Predictor


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


def resize_shorter_side(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 RGB [H, W, 3] with its shorter side `size` (the longer int(size * long / short)), as torchvision's
    `resize(image, size)` sizes it; bilinear, through PIL."""
    height, width = image.shape[:2]
    short, long = sorted((height, width))
    if short == size:
        return image
    other = int(size * long / short)
    new_height, new_width = (size, other) if height <= width else (other, size)
    return np.asarray(Image.fromarray(image).resize((new_width, new_height), Image.Resampling.BILINEAR))


class Segmenter(Predictor):
    """A segmentation checkpoint or named weights: `predict(images)` -> per image {mask, labels, names} (see the
    module docstring); `predict_video` blends the class colours into each frame."""

    task = "segment"
    preprocessing = ("mean", "std")

    @property
    def resize_size(self) -> int | None:
        """The shorter side images are resized to: named weights' evaluation size; None (their own size) else."""
        return self.weights.resize_size if self.weights is not None else None

    def prepare(self, image: np.ndarray) -> tuple[Tensor, dict[str, Any]]:
        size = self.resize_size
        tensor, _ = self.transform(image if size is None else resize_shorter_side(image, size))
        return tensor, {"orig_size": (int(image.shape[0]), int(image.shape[1]))}

    def postprocess(self, outputs: Tensor, metas: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.resize_size is None:
            return masks(outputs, metas, self.class_names)
        results = []
        for logits, meta in zip(outputs, metas, strict=True):
            resized = F.interpolate(logits[None], size=meta["orig_size"], mode="bilinear", align_corners=False)
            results += masks(resized, [meta], self.class_names)
        return results

    def annotate(self, image: np.ndarray, result: dict[str, Any]) -> np.ndarray:
        return overlay_mask(image, result["mask"].numpy())
