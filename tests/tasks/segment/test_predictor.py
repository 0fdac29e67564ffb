"""`Segmenter`: the same masks as `predict` through the data module, for every kind of input, and videos."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tasks.segment import Segmenter
from tests.helpers import annotated_video, datamodule_predictions, predictor_checkpoint, write_noise_images

SIZES = [(48, 64), (90, 37), (64, 66)]  # (H, W): each image at its own size


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return predictor_checkpoint(
        "segment", tmp_path_factory.mktemp("segment"), mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.25)
    )


def test_same_masks_as_the_datamodule_path(trained, tmp_path):
    checkpoint, data = trained
    paths = write_noise_images(tmp_path / "images", SIZES)
    expected = datamodule_predictions("segment", checkpoint, data, tmp_path / "images", tmp_path / "out")
    segmenter = Segmenter.from_checkpoint(checkpoint)
    assert segmenter.preprocessing_arguments == {"mean": (0.4, 0.5, 0.6), "std": (0.2, 0.3, 0.25)}
    arrays = [np.array(Image.open(p)) for p in paths]
    inputs = [paths[0], arrays[1], torch.from_numpy(arrays[2]).permute(2, 0, 1) / 255.0]
    got = segmenter.predict(inputs, batch_size=8)
    for have, want, size in zip(got, expected, SIZES, strict=True):
        assert have["mask"].shape == size and have["mask"].dtype == torch.int64
        assert torch.equal(have["mask"], want["mask"])
        assert have["labels"] == have["mask"].unique().tolist()
        assert have["names"] == [segmenter.class_names[label] for label in have["labels"]]
    assert any(label != 0 for r in got for label in r["labels"])  # not all background: the masks say something


def test_video_round_trip(trained, tmp_path):
    result, frames, original = annotated_video(Segmenter.from_checkpoint(trained[0]), tmp_path, ".avi")
    assert result.frames == len(frames) == len(original) == 5 and frames[0].shape == (56, 72, 3)
