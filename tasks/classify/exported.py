"""What a classifier exports, and how exported classifiers are scored: `logits` [N, K] at the checkpoint's
resolution."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from torch import nn

from deploy.runtimes import Loaded
from tasks.common.export import resize_images


def exportable(network: nn.Module, image_size: int) -> nn.Module:
    """The classifier itself: its output is the logits."""
    return network


def classification_figures(logits: Mapping[str, np.ndarray], labels: np.ndarray) -> dict[str, float]:
    """Top-1 of each model (`<name>/top1`) and, for two models, the fraction of images where they agree."""
    predictions = {name: np.asarray(v).argmax(1) for name, v in logits.items()}
    figures = {f"{name}/top1": float((p == labels).mean()) for name, p in predictions.items()}
    if len(predictions) == 2:
        first, second = predictions.values()
        figures["top1_agreement"] = float((first == second).mean())
    return figures


def evaluate_classification(models: Mapping[str, Loaded], loader: Iterable, size: int) -> dict[str, float]:
    """Top-1 of each model and their agreement over `loader`'s (images, labels) batches."""
    logits: dict[str, list[np.ndarray]] = {name: [] for name in models}
    labels = []
    for images, targets in loader:
        images = resize_images(images, size)
        for name, model in models.items():
            logits[name].append(model.run(images)[0].numpy())
        labels.append(np.asarray(targets))
    return classification_figures({k: np.concatenate(v) for k, v in logits.items()}, np.concatenate(labels))


def evaluate_exported(
    models: Mapping[str, Loaded], datamodule: Any, checkpoint: Any, size: int | None, outputs: Sequence[str]
) -> dict[str, float]:
    """`evaluate_classification` on the data module's val split (logits or an end-to-end file's probabilities
    rank the classes alike)."""
    return evaluate_classification(models, datamodule.val_dataloader(), size)
