"""Segmentation validation plots: IoU bars equal `segmentation_scores`, the row-normalised confusion matrix, overlays
of the first images cut back from the batch padding, and the PNGs of a short fit in the run folder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tasks.segment.data.module import collate_segmentation
from tasks.segment.data.transforms import IGNORE_INDEX
from tasks.segment.metrics import segmentation_scores
from tasks.segment.plots import SegmentationPlots, class_iou_figure, plot_samples
from tests.helpers import png_pixels, validated_figures
from tests.tasks.segment.test_cli import run, synthetic

NAMES = ["background", "road", "car", "sky"]
# rows: truth, columns: prediction; "sky" is absent from both, so it has no IoU
CONFUSION = np.array([[50, 3, 2, 0], [4, 30, 1, 0], [6, 0, 9, 0], [0, 0, 0, 0]])
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def test_iou_bars_equal_segmentation_scores(tmp_path):
    scores = segmentation_scores(torch.as_tensor(CONFUSION), NAMES)
    figure = class_iou_figure(CONFUSION, NAMES)
    axes = figure.axes[0]
    bars = [patch for patch in axes.patches if patch.get_gid() == "iou"]
    heights = [bar.get_height() for bar in bars]
    assert heights[:3] == pytest.approx([scores[f"IoU/{n}"] for n in NAMES[:3]], abs=1e-12)
    assert heights[0] == pytest.approx(50 / (55 + 60 - 50))  # an independent check of one value
    assert heights[3] == 0 and "n/a" in [t.get_text() for t in axes.texts]  # no IoU: no bar, marked
    assert axes.get_lines()[0].get_ydata()[0] == pytest.approx(scores["mIoU"])
    assert [t.get_text() for t in axes.get_xticklabels()] == NAMES
    figure.savefig(tmp_path / "iou.png")
    png_pixels(tmp_path / "iou.png")


def test_confusion_matrix_is_normalised_by_true_class(tmp_path):
    figures = SegmentationPlots(CONFUSION, NAMES, samples=[]).figures()
    assert set(figures) == {"class_iou", "confusion_matrix"}  # no samples, no overlay grid
    shown = np.asarray([a for a in figures["confusion_matrix"].axes if a.get_images()][0].get_images()[0].get_array())
    assert shown[:3].sum(1) == pytest.approx([1, 1, 1]) and shown[1, 1] == pytest.approx(30 / 35)
    figures["confusion_matrix"].savefig(tmp_path / "confusion.png")
    png_pixels(tmp_path / "confusion.png")


def test_samples_are_cut_back_from_the_batch_padding():
    rng = np.random.default_rng(0)
    sizes = [(20, 30), (26, 18)]
    pixels = [torch.from_numpy(rng.integers(0, 256, (3, h, w), dtype=np.uint8)) for h, w in sizes]
    masks = [torch.from_numpy(rng.integers(0, 3, (h, w))).long() for h, w in sizes]
    masks[1][-1] = IGNORE_INDEX  # an ignored last row of the image is kept: its pixels are not padding
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    batch = [((p.float() / 255 - mean) / std, m) for p, m in zip(pixels, masks, strict=True)]
    images, truth = collate_segmentation(batch)
    assert images.shape[-2:] == (26, 30)
    predictions = torch.zeros_like(truth)
    samples = plot_samples(images, truth, predictions, MEAN, STD)
    for (image, mask, predicted), p, m in zip(samples, pixels, masks, strict=True):
        assert np.array_equal(image, p.permute(1, 2, 0).numpy())
        assert np.array_equal(mask, m.numpy()) and predicted.shape == mask.shape


def test_validation_figures_of_a_validate_run(tmp_path):
    module, data, logged, figures = validated_figures("segment", tmp_path)
    assert set(figures) == {"class_iou", "confusion_matrix", "val_predictions"}
    plots = module._plots
    assert segmentation_scores(torch.as_tensor(plots.confusion))["mIoU"] == pytest.approx(logged["val/mIoU"])
    assert len(plots.samples) == len(data.val_dataset)  # 3 val images, fewer than PLOT_SAMPLES
    assert len(figures["val_predictions"].axes) == 3 * len(plots.samples)  # image, truth, prediction
    assert plots.confusion.sum() == sum(int((mask != IGNORE_INDEX).sum()) for _, mask, _ in plots.samples)


def test_fit_writes_the_plots_into_the_run_folder(tmp_path):
    run(tmp_path, "fit", "--trainer.max_epochs", "1", *synthetic(tmp_path))
    for name in ("class_iou", "confusion_matrix", "val_predictions"):
        png_pixels(tmp_path / f"{name}.png")
