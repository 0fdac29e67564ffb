"""Classification validation plots: the confusion matrix over the whole val set, images with true and predicted
labels, and the PNGs of a short fit in the run folder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tasks.classify.plots import ClassificationPlots, labelled_grid_figure, plot_samples
from tests.helpers import png_pixels, validated_figures
from tests.tasks.classify.test_cli import run, synthetic

NAMES = ["cat", "dog", "fox"]
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def test_samples_carry_true_and_top1_labels(tmp_path):
    images = torch.zeros(2, 3, 16, 16)
    images[1] = 1.0  # pixel value 0.75 after un-normalising
    labels = torch.tensor([0, 2, 1])  # longer than the images kept: only the first two are used
    logits = torch.tensor([[3.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0]])
    samples = plot_samples(images, labels, logits, MEAN, STD)
    assert [(s.label, s.predicted) for s in samples] == [(0, 0), (2, 1)]
    assert samples[1].probability == pytest.approx(float(torch.softmax(logits[1], 0)[1]))
    assert samples[0].image.shape == (16, 16, 3) and int(samples[0].image[0, 0, 0]) == 128
    assert int(samples[1].image[0, 0, 0]) == 191
    figure = labelled_grid_figure(samples, NAMES)
    titles = [axes.get_title() for axes in figure.axes]
    assert titles[0] == f"true cat\npred cat {samples[0].probability:.2f}"
    assert titles[1].startswith("true fox\npred dog") and titles[1].endswith("(wrong)")


def test_figures_render(tmp_path):
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.normal(size=(5, 3, 24, 24)).astype(np.float32))
    samples = plot_samples(images, torch.tensor([0, 1, 2, 1, 0]), torch.randn(5, 3), MEAN, STD)
    figures = ClassificationPlots(np.array([[3, 1, 0], [0, 4, 1], [2, 0, 5]]), NAMES, samples).figures()
    assert set(figures) == {"confusion_matrix", "val_predictions"}
    for name, figure in figures.items():
        figure.savefig(tmp_path / f"{name}.png")
        png_pixels(tmp_path / f"{name}.png")


def test_validation_figures_of_a_validate_run(tmp_path):
    module, data, logged, figures = validated_figures("classify", tmp_path)
    assert set(figures) == {"confusion_matrix", "val_predictions"}
    plots = module._plots
    # the matrix counts every val image once, and its diagonal is the logged top-1
    assert plots.confusion.sum() == len(data.val_dataset) == 8
    assert np.trace(plots.confusion) / plots.confusion.sum() == pytest.approx(logged["val/top1"])
    assert len(plots.samples) == 8 and all(s.image.shape == (64, 64, 3) for s in plots.samples)
    per_sample = np.zeros_like(plots.confusion)
    for sample in plots.samples:
        per_sample[sample.label, sample.predicted] += 1
    assert np.array_equal(per_sample, plots.confusion)  # all 8 images kept: the samples are the matrix
    # evaluating again starts from nothing: the matrix does not accumulate over passes
    module.trainer.validate(module, datamodule=data, verbose=False)
    assert module._plots.confusion.sum() == 8


def test_fit_writes_the_plots_into_the_run_folder(tmp_path):
    run(tmp_path, "fit", "--trainer.max_epochs", "1", *synthetic(tmp_path))
    for name in ("confusion_matrix", "val_predictions"):
        png_pixels(tmp_path / f"{name}.png")
