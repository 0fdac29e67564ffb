"""`Detector`: the same detections as `predict` through the data module, for every kind of input, and videos."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tasks.detect import Detector
from tests.helpers import (
    SIZE,
    annotated_video,
    datamodule_predictions,
    predictor_checkpoint,
    tiny_task,
    write_checkpoint,
    write_noise_images,
    write_video,
)

SIZES = [(48, 64), (90, 37), (64, 64), (30, 100)]  # (H, W): stretched or letterboxed differently each


@pytest.fixture(scope="module", params=[False, True], ids=["resize", "letterbox"])
def trained(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("detect")
    return predictor_checkpoint("detect", folder, keep_aspect_ratio=request.param, mean=(0.4, 0.5, 0.6))


def test_same_detections_as_the_datamodule_path(trained, tmp_path):
    checkpoint, data = trained
    paths = write_noise_images(tmp_path / "images", SIZES)
    expected = datamodule_predictions("detect", checkpoint, data, tmp_path / "images", tmp_path / "out")
    detector = Detector.from_checkpoint(checkpoint)
    assert detector.preprocessing_arguments == {
        "image_size": SIZE,
        "keep_aspect_ratio": data.keep_aspect_ratio,
        "mean": (0.4, 0.5, 0.6),
        "std": data.std,
    }
    arrays = [np.array(Image.open(p)) for p in paths]
    inputs = [
        str(paths[0]),  # a path
        arrays[1],  # an H x W x 3 uint8 array
        torch.from_numpy(arrays[2]).permute(2, 0, 1),  # a uint8 tensor
        torch.from_numpy(arrays[3]).permute(2, 0, 1) / 255.0,  # a float tensor in 0..1
    ]
    got = detector.predict(inputs, batch_size=data.batch_size)
    assert len(got) == len(expected) == len(SIZES)
    assert got[0]["path"] == str(paths[0]) and "path" not in got[1]
    for have, want, (height, width) in zip(got, expected, SIZES, strict=True):
        assert len(want["boxes"]) > 0
        torch.testing.assert_close(have["boxes"], want["boxes"], atol=1e-3, rtol=0)
        torch.testing.assert_close(have["scores"], want["scores"])
        assert torch.equal(have["labels"], want["labels"])
        assert have["names"] == [detector.class_names[label] for label in want["labels"].tolist()]
        # in the image's own pixels
        assert float(have["boxes"][:, 0::2].max()) <= width and float(have["boxes"][:, 1::2].max()) <= height
    # a folder is its images, in name order; one image alone is a list of one
    folder = detector.predict(tmp_path / "images", batch_size=data.batch_size)
    assert [r["path"] for r in folder] == [str(p) for p in paths]
    torch.testing.assert_close(folder[3]["boxes"], expected[3]["boxes"], atol=1e-3, rtol=0)
    alone = detector.predict(Image.open(paths[1]))
    assert len(alone) == 1 and torch.equal(alone[0]["labels"], expected[1]["labels"])


def test_video_round_trip(trained, tmp_path):
    detector = Detector.from_checkpoint(trained[0])
    detector.draw_score_threshold = 0.0  # a random detector's scores are low: draw them all
    result, frames, original = annotated_video(detector, tmp_path)
    assert result.frames == len(frames) == 5 and result.size == (72, 56)
    assert frames[0].shape == original[0].shape
    assert np.abs(frames[0].astype(int) - original[0].astype(int)).mean() > 5  # boxes drawn on it


def test_bad_inputs(trained, tmp_path):
    detector = Detector.from_checkpoint(trained[0])
    with pytest.raises(ValueError, match=r"images\[1\]: a numpy array must be uint8 H x W x 3"):
        detector.predict([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.float32)])
    with pytest.raises(ValueError, match=r"images\[0\]: a float tensor must hold values in 0..1"):
        detector.predict(torch.full((3, 8, 8), 2.0))
    with pytest.raises(ValueError, match=r"in\.mp4 is a video: use predict_video"):
        detector.predict(write_video(tmp_path / "in.mp4", frames=1))
    with pytest.raises(FileNotFoundError, match=r"missing\.jpg: no such file"):
        detector.predict(tmp_path / "missing.jpg")
    with pytest.raises(ValueError, match=r"the video suffix must be one of"):
        detector.predict_video(tmp_path / "in.mp4", tmp_path / "out.gif")
    with pytest.raises(FileNotFoundError, match=r"checkpoint .*nothing\.ckpt: no such file; pass the path of a \.ckpt"):
        Detector.from_checkpoint(tmp_path / "nothing.ckpt")
    other = write_checkpoint(tmp_path / "classify.ckpt", *tiny_task("classify", tmp_path / "cache"))
    with pytest.raises(
        ValueError, match=r"is a classify task checkpoint, not a detect one.*Classifier\.from_checkpoint"
    ):
        Detector.from_checkpoint(other)
