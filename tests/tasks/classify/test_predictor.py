"""`Classifier`: the same top-k classes as `predict` through the data module, for every kind of input, and videos."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tasks.classify import Classifier
from tests.helpers import SIZE, annotated_video, datamodule_predictions, predictor_checkpoint, write_noise_images

SIZES = [(48, 64), (90, 37), (64, 64), (100, 130), (70, 71)]  # (H, W): resized and centre-cropped differently


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.manual_seed(0)  # the tiny model's initialisation
    return predictor_checkpoint("classify", tmp_path_factory.mktemp("classify"), calibrate, crop_pct=0.75)


def calibrate(module) -> None:
    """Batch-norm statistics measured on normal noise and logits 50 times larger: a random tiny classifier's
    features would otherwise not depend on the image, nor its scores differ from uniform."""
    norms = [m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a plain average over the calibration batch
    module.train()
    module.model(torch.randn(16, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0)))
    module.eval()
    module.model.head.fc.weight.mul_(50.0)


def test_same_top_classes_as_the_datamodule_path(trained, tmp_path):
    checkpoint, data = trained
    paths = write_noise_images(tmp_path / "images", SIZES)
    expected = datamodule_predictions("classify", checkpoint, data, tmp_path / "images", tmp_path / "out")
    classifier = Classifier.from_checkpoint(checkpoint)
    recorded = {"resolution": SIZE, "crop_pct": 0.75, "interpolation": "bilinear", "mean": data.mean, "std": data.std}
    assert classifier.preprocessing_arguments == recorded
    arrays = [np.array(Image.open(p)) for p in paths]
    tensors = [torch.from_numpy(a).permute(2, 0, 1) for a in arrays]
    inputs = [str(paths[0]), arrays[1], tensors[2], tensors[3] / 255.0, Image.open(paths[4])]
    got = classifier.predict(inputs, batch_size=data.eval_batch_size)
    assert len(got) == len(expected) == len(SIZES)
    for have, want in zip(got, expected, strict=True):
        assert len(have["labels"]) == 5 and have["labels"] == want["labels"]
        np.testing.assert_allclose(have["scores"], want["scores"], rtol=0, atol=1e-6)
        assert have["names"] == [classifier.class_names[label] for label in want["labels"]]
    assert len({tuple(r["labels"]) for r in got}) > 1  # the ranking depends on the image


def test_video_round_trip(trained, tmp_path):
    result, frames, original = annotated_video(Classifier.from_checkpoint(trained[0]), tmp_path)
    assert result.frames == len(frames) == 5
    # the caption band is drawn at the top left, the rest of the frame is the video's
    assert frames[0][:4, :20].mean() < 60 < original[0][:4, :20].mean()
