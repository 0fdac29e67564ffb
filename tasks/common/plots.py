"""Figure helpers the three tasks' validation plots share: a confusion-matrix heatmap with class names, a grid of
images with titles, un-normalising evaluation inputs, and the rule for which validation samples are kept.

Figures are `matplotlib.figure.Figure` objects with an Agg canvas attached: no pyplot, no global backend switch,
no figure registry to leak, so they can be built in any process (a training run, a test) and written with
`figure.savefig(path)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: Validation images kept for the drawn grids (the first ones rank 0 evaluates); nothing more is stored per image.
PLOT_SAMPLES = 8
#: Cells annotated with their value up to this many classes; beyond, the colours alone carry the matrix.
ANNOTATED_CLASSES = 25


def new_figure(width: float, height: float) -> Figure:
    """An empty figure of `width` x `height` inches on an Agg canvas (PNG output without pyplot)."""
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def samples_wanted(module: Any, kept: int, limit: int = PLOT_SAMPLES) -> int:
    """How many more validation samples `module` should keep for its plots: none but on rank 0, at most `limit`."""
    return max(limit - kept, 0) if module.global_rank == 0 else 0


def to_uint8_images(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Normalised inputs [B, 3, H, W] back to displayable RGB uint8 [B, H, W, 3] (`mean`, `std` in 0-1 units)."""
    mean_t = torch.as_tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    pixels = (images.detach().float().cpu() * std_t + mean_t).clamp(0, 1) * 255
    return pixels.round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def input_normalisation(module: Any) -> tuple[Sequence[float], Sequence[float]]:
    """(mean, std) of the data module `module` is evaluated on: what its inputs were normalised with."""
    datamodule = module.trainer.datamodule
    return tuple(datamodule.mean), tuple(datamodule.std)


def confusion_matrix_figure(
    matrix: np.ndarray | torch.Tensor,
    class_names: Sequence[str],
    title: str,
    normalise_rows: bool = False,
    row_label: str = "true",
    column_label: str = "predicted",
) -> Figure:
    """A heatmap of a (C, C) count matrix (rows: truth, columns: prediction) with class names on both axes.

    `normalise_rows` shows each row as fractions of its total (a row without samples stays 0), so that rare
    classes read on the same scale as common ones; otherwise cells are the counts.
    """
    counts = np.asarray(matrix, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] != len(class_names):
        raise ValueError(f"confusion matrix of shape {counts.shape} does not match {len(class_names)} class names")
    values = counts
    if normalise_rows:
        totals = counts.sum(1, keepdims=True)
        values = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    size = len(class_names)
    side = min(max(4.0, 0.45 * size + 2.5), 24.0)
    figure = new_figure(side + 1.2, side)
    axes = figure.add_subplot()
    image = axes.imshow(values, cmap="Blues", vmin=0.0, vmax=1.0 if normalise_rows else max(values.max(), 1.0))
    figure.colorbar(image, ax=axes, shrink=0.8, label="fraction of row" if normalise_rows else "count")
    ticks = np.arange(size)
    font = 8 if size <= 12 else 6
    axes.set_xticks(ticks, labels=list(class_names), rotation=90, fontsize=font)
    axes.set_yticks(ticks, labels=list(class_names), fontsize=font)
    axes.set_xlabel(column_label)
    axes.set_ylabel(row_label)
    axes.set_title(title)
    if size <= ANNOTATED_CLASSES:
        threshold = 0.5 * (values.max() if values.max() > 0 else 1.0)
        for (row, column), value in np.ndenumerate(values):
            if counts[row, column] == 0:
                continue
            text = f"{value:.2f}" if normalise_rows else f"{int(round(value))}"
            colour = "white" if value > threshold else "black"
            axes.text(column, row, text, ha="center", va="center", color=colour, fontsize=font)
    return figure


def image_grid_figure(
    images: Sequence[np.ndarray], titles: Sequence[str], columns: int, panel_inches: float = 2.6
) -> Figure:
    """Images (H, W, 3 uint8, any sizes) in a grid of `columns`, each under its title, axes hidden."""
    if len(images) != len(titles):
        raise ValueError(f"got {len(images)} images but {len(titles)} titles; they must pair up")
    if not images:
        raise ValueError("an image grid needs at least one image")
    columns = max(1, min(columns, len(images)))
    rows = -(-len(images) // columns)
    figure = new_figure(columns * panel_inches, rows * (panel_inches + 0.3))
    for index, (image, title) in enumerate(zip(images, titles, strict=True)):
        axes = figure.add_subplot(rows, columns, index + 1)
        axes.imshow(np.asarray(image), interpolation="nearest")
        axes.set_title(title, fontsize=7)
        axes.set_axis_off()
    return figure
