"""The shared figure helpers: confusion-matrix heatmap, image grid, un-normalising inputs, which samples to keep."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tasks.common.plots import (
    PLOT_SAMPLES,
    confusion_matrix_figure,
    image_grid_figure,
    samples_wanted,
    to_uint8_images,
)
from tests.helpers import png_pixels

NAMES = ["background", "cat", "dog"]
COUNTS = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 0]])


def test_confusion_matrix_shows_counts_or_row_fractions(tmp_path):
    counts = confusion_matrix_figure(COUNTS, NAMES, "counts")
    (axes,) = [a for a in counts.axes if a.get_images()]
    assert np.array_equal(axes.get_images()[0].get_array(), COUNTS)
    assert [t.get_text() for t in axes.get_xticklabels()] == NAMES
    assert sorted(t.get_text() for t in axes.texts) == sorted(["5", "1", "2", "7", "1"])  # zeros unlabelled
    fractions = confusion_matrix_figure(torch.tensor(COUNTS), NAMES, "rows", normalise_rows=True)
    shown = np.asarray([a for a in fractions.axes if a.get_images()][0].get_images()[0].get_array())
    assert shown[0] == pytest.approx([5 / 6, 1 / 6, 0]) and shown[1] == pytest.approx([0.2, 0.7, 0.1])
    assert shown[2].tolist() == [0, 0, 0]  # a class without samples stays 0, not NaN
    counts.savefig(tmp_path / "counts.png")
    png_pixels(tmp_path / "counts.png")


def test_confusion_matrix_needs_one_name_per_class():
    with pytest.raises(ValueError, match="does not match 2 class names"):
        confusion_matrix_figure(COUNTS, NAMES[:2], "x")


def test_image_grid_renders_each_image_under_its_title(tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, 40, 3), dtype=np.uint8) for h in (30, 50, 40)]
    figure = image_grid_figure(images, ["a", "b", "c"], columns=2)
    shown = [a for a in figure.axes if a.get_images()]
    assert [a.get_title() for a in shown] == ["a", "b", "c"]
    assert all(np.array_equal(a.get_images()[0].get_array(), i) for a, i in zip(shown, images, strict=True))
    figure.savefig(tmp_path / "grid.png")
    png_pixels(tmp_path / "grid.png")
    with pytest.raises(ValueError, match="pair up"):
        image_grid_figure(images, ["a"], columns=2)


def test_to_uint8_images_inverts_the_normalisation():
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    pixels = torch.randint(0, 256, (2, 3, 5, 7), dtype=torch.uint8)
    normalised = (pixels.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    back = to_uint8_images(normalised, mean, std)
    assert back.shape == (2, 5, 7, 3) and back.dtype == np.uint8
    assert np.array_equal(back, pixels.permute(0, 2, 3, 1).numpy())


def test_samples_are_kept_on_rank_zero_only_up_to_the_limit():
    assert samples_wanted(SimpleNamespace(global_rank=0), 0) == PLOT_SAMPLES
    assert samples_wanted(SimpleNamespace(global_rank=0), PLOT_SAMPLES - 3) == 3
    assert samples_wanted(SimpleNamespace(global_rank=0), PLOT_SAMPLES + 1) == 0
    assert samples_wanted(SimpleNamespace(global_rank=1), 0) == 0
