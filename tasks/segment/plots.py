"""Segmentation validation plots: per-class IoU bars and the row-normalised confusion matrix, both from the one
confusion matrix the task accumulates over the whole evaluation set, and image / truth / prediction overlays of
the first validation images."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure

from deploy.run.drawing import overlay_mask
from tasks.common.plots import confusion_matrix_figure, image_grid_figure, new_figure, to_uint8_images
from tasks.segment.data.transforms import IGNORE_INDEX
from tasks.segment.metrics import segmentation_scores


def class_iou_figure(confusion: np.ndarray | torch.Tensor, class_names: Sequence[str]) -> Figure:
    """A bar per class of its IoU as `segmentation_scores` gives it; a class absent from truth and predictions
    (no IoU) is marked "n/a" with no bar. The dashed line is the mIoU."""
    scores = segmentation_scores(torch.as_tensor(np.asarray(confusion)), class_names)
    ious = [scores[f"IoU/{name}"] for name in class_names]
    figure = new_figure(max(5.0, 0.45 * len(class_names) + 2.0), 4.5)
    axes = figure.add_subplot()
    positions = np.arange(len(class_names))
    heights = [0.0 if math.isnan(iou) else iou for iou in ious]
    bars = axes.bar(positions, heights, color="#4363d8", gid="iou")
    for bar, iou in zip(bars, ious, strict=True):
        text = "n/a" if math.isnan(iou) else f"{iou:.2f}"
        axes.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.01, text, ha="center", fontsize=7)
    axes.axhline(scores["mIoU"], color="black", linestyle="--", linewidth=1, label=f"mIoU {scores['mIoU']:.3f}")
    axes.set_xticks(positions, labels=list(class_names), rotation=90 if len(class_names) > 8 else 0, fontsize=8)
    axes.set_ylim(0, 1.08)
    axes.set_ylabel("IoU")
    axes.set_title(f"IoU per class (pixel accuracy {scores['pixel_accuracy']:.3f})")
    axes.legend(loc="upper right", fontsize=8)
    return figure


def unpadded(image: np.ndarray, truth: np.ndarray) -> tuple[slice, slice]:
    """The rows and columns of a collated evaluation sample that are not bottom/right padding: padding is 0 in
    the normalised image (every channel) and IGNORE_INDEX in the mask, together."""
    padding = (image == 0).all(0) & (truth == IGNORE_INDEX)
    rows = np.flatnonzero(~padding.all(1))
    columns = np.flatnonzero(~padding.all(0))
    return slice(0, int(rows[-1]) + 1 if len(rows) else 0), slice(0, int(columns[-1]) + 1 if len(columns) else 0)


def plot_samples(
    images: torch.Tensor, masks: torch.Tensor, predictions: torch.Tensor, mean: Sequence[float], std: Sequence[float]
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(RGB uint8 [H, W, 3], truth, prediction) per normalised input of `images`, padding cut off."""
    samples = []
    rgb = to_uint8_images(images, mean, std)
    for index, (normalised, pixels) in enumerate(zip(images.cpu().numpy(), rgb, strict=True)):
        truth, predicted = masks[index].cpu().numpy(), predictions[index].cpu().numpy()
        rows, columns = unpadded(normalised, truth)
        samples.append((pixels[rows, columns], truth[rows, columns], predicted[rows, columns]))
    return samples


def overlay_grid_figure(
    samples: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], class_names: Sequence[str]
) -> Figure:
    """One row per sample (RGB uint8 [H, W, 3], truth [H, W], prediction [H, W]): the image, the truth over it,
    the prediction over it, in the VOC colours (ignored truth pixels in VOC's boundary colour)."""
    panels, titles = [], []
    for index, (image, truth, prediction) in enumerate(samples):
        present = sorted({int(v) for v in np.unique(truth)} - {IGNORE_INDEX})
        predicted = sorted(int(v) for v in np.unique(prediction))
        panels += [image, overlay_mask(image, truth), overlay_mask(image, prediction)]
        titles += [
            f"image {index}",
            "truth: " + ", ".join(class_names[v] for v in present if v > 0),
            "predicted: " + ", ".join(class_names[v] for v in predicted if v > 0),
        ]
    return image_grid_figure(panels, titles, columns=3)


@dataclass
class SegmentationPlots:
    """What the figures of one evaluation pass need: the confusion counts and the first images' samples."""

    confusion: np.ndarray
    class_names: list[str]
    samples: list[tuple[np.ndarray, np.ndarray, np.ndarray]]

    def figures(self) -> dict[str, Figure]:
        figures = {
            "class_iou": class_iou_figure(self.confusion, self.class_names),
            "confusion_matrix": confusion_matrix_figure(
                self.confusion, self.class_names, "pixels, normalised by true class", normalise_rows=True
            ),
        }
        if self.samples:
            figures["val_predictions"] = overlay_grid_figure(self.samples, self.class_names)
        return figures
