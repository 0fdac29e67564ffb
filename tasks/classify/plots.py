"""Classification validation plots: the confusion matrix over the whole evaluation set and the first validation
images with their true and predicted labels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure

from tasks.common.plots import confusion_matrix_figure, image_grid_figure, to_uint8_images


@dataclass(frozen=True)
class LabelledImage:
    """One validation input as shown (RGB uint8 [H, W, 3]) with its true label, top-1 label and probability."""

    image: np.ndarray
    label: int
    predicted: int
    probability: float


def plot_samples(
    images: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor, mean: Sequence[float], std: Sequence[float]
) -> list[LabelledImage]:
    """A `LabelledImage` per normalised input of `images` (the first len(images) of `labels` and `logits`)."""
    probabilities, predicted = logits[: len(images)].detach().float().softmax(1).max(1)
    return [
        LabelledImage(pixels, int(label), int(top), float(probability))
        for pixels, label, top, probability in zip(
            to_uint8_images(images, mean, std),
            labels[: len(images)].tolist(),
            predicted.tolist(),
            probabilities.tolist(),
            strict=True,
        )
    ]


def labelled_grid_figure(samples: Sequence[LabelledImage], class_names: Sequence[str]) -> Figure:
    """The images, four per row, titled with the true class and the top-1 class (a mistake is marked)."""
    titles = [
        f"true {class_names[s.label]}\npred {class_names[s.predicted]} {s.probability:.2f}"
        + ("" if s.predicted == s.label else "  (wrong)")
        for s in samples
    ]
    return image_grid_figure([s.image for s in samples], titles, columns=4)


@dataclass
class ClassificationPlots:
    """What the figures of one evaluation pass need: the confusion counts and the first images' samples."""

    confusion: np.ndarray
    class_names: list[str]
    samples: list[LabelledImage]

    def figures(self) -> dict[str, Figure]:
        figures = {"confusion_matrix": confusion_matrix_figure(self.confusion, self.class_names, "top-1, counts")}
        if self.samples:
            figures["val_predictions"] = labelled_grid_figure(self.samples, self.class_names)
        return figures
