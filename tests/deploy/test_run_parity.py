"""The runner on real end-to-end exports (`python -m tasks.<task> export`'s files) against the Python predictors on
the same image files: the same detections, masks and top classes.

The tiny checkpoints' batch norms hold their inputs' statistics (`with_batch_statistics`), so that their outputs
depend on the image: with random statistics alone every image gets the same detections, and a preprocessing
mistake would go unseen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from deploy.metadata import KEY
from deploy.run import load
from tasks.classify.predictor import Classifier
from tasks.common.export import export_checkpoint
from tasks.common.predictor import Predictor
from tasks.detect.predictor import Detector
from tasks.segment.predictor import Segmenter
from tests.deploy.run_models import run_without_torch
from tests.helpers import (
    SIZE,
    predictor_checkpoint,
    with_batch_statistics,
    with_measured_statistics,
    write_noise_images,
)

# (H, W) of the test images: odd sizes, both orientations, the network's own size
IMAGE_SIZES = [(37, 53), (SIZE, SIZE), (81, 47), (20, 100), (120, 90)]
BOX_TOLERANCE = 1e-3  # of the image's size
SCORE_TOLERANCE = 1e-4
MASK_AGREEMENT = 0.999


def measured(task: str) -> Any:
    """An edit giving the task model's batch norms the statistics of noise inputs."""
    inputs = torch.randn(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    if task == "detect":
        return lambda module: with_measured_statistics(module.model, inputs)
    return lambda module: with_batch_statistics(module.model, inputs)


def exported(task: str, folder: Path, format: str = "onnx", **data_overrides: Any) -> tuple[Path, Path]:
    """(checkpoint, its end-to-end file in `format` (onnx, openvino)); of batch 1, which the runner fills image by
    image, except segmentation's (a dynamic batch: images of one size run together)."""
    torch.manual_seed(0)
    checkpoint, _ = predictor_checkpoint(task, folder, measured(task), **data_overrides)
    suffix = {"onnx": ".onnx", "openvino": ".xml"}[format]
    # segmentation checkpoints record no input size: the export's check runs at the test size, not the default
    options = {"image_size": SIZE, "dynamic_batch": True} if task == "segment" else {}
    result = export_checkpoint(task, checkpoint, format, output=folder / f"{task}{suffix}", **options)
    assert result.end_to_end
    return checkpoint, result.path


def both(predictor: type[Predictor], checkpoint: Path, model: Path, images: list[Path]) -> list[tuple[dict, dict]]:
    """(the predictor's result, the runner's) per image, both on a batch of 3 at a time."""
    runner = load(model)
    assert runner.backend.metadata_text is not None and KEY == "mobilenet_suite"
    want = predictor.from_checkpoint(checkpoint).predict(images, batch_size=3)
    got = runner(images, batch_size=3)
    assert [r["path"] for r in got] == [r["path"] for r in want] == [str(path) for path in images]
    return list(zip(want, got, strict=True))


def assert_same_detections(want: dict, got: dict, image_size: tuple[int, int]) -> None:
    """The same detections (labels, boxes within BOX_TOLERANCE of the image size, scores within SCORE_TOLERANCE),
    matched one to one: rows of scores equal to float precision may come in either order."""
    assert got["boxes"].dtype == np.float32 and got["labels"].dtype == np.int64
    assert len(got["labels"]) == len(want["labels"])
    np.testing.assert_allclose(got["scores"], want["scores"].numpy(), rtol=0, atol=SCORE_TOLERANCE)
    tolerance = BOX_TOLERANCE * max(image_size)
    unmatched = list(range(len(got["labels"])))
    for box, score, label in zip(want["boxes"].numpy(), want["scores"].numpy(), want["labels"].numpy(), strict=True):
        close = [
            i
            for i in unmatched
            if got["labels"][i] == label
            and abs(got["scores"][i] - score) <= SCORE_TOLERANCE
            and np.abs(got["boxes"][i] - box).max() <= tolerance
        ]
        assert close, f"the predictor's {label} {score:.4f} {box} is not among the runner's"
        unmatched.remove(close[0])
    assert sorted(got["names"]) == sorted(want["names"])


@pytest.mark.parametrize("letterbox", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_detections_equal_the_predictors(tmp_path, letterbox, format="onnx"):
    images = write_noise_images(tmp_path / "images", IMAGE_SIZES)
    checkpoint, model = exported("detect", tmp_path, format, keep_aspect_ratio=letterbox)
    assert load(model).contract.resize == ("letterbox" if letterbox else "stretch")
    pairs = both(Detector, checkpoint, model, images)
    for (want, got), size in zip(pairs, IMAGE_SIZES, strict=True):
        assert len(want["labels"]) > 0
        assert_same_detections(want, got, size)
    # the detections depend on the image: a preprocessing mistake would show
    assert len({tuple(np.round(want["scores"].numpy()[:5], 4)) for want, _ in pairs}) > 1


def test_masks_equal_the_predictors(tmp_path, format="onnx"):
    images = write_noise_images(tmp_path / "images", IMAGE_SIZES)
    checkpoint, model = exported("segment", tmp_path, format)
    pairs = both(Segmenter, checkpoint, model, images)
    for (want, got), size in zip(pairs, IMAGE_SIZES, strict=True):
        assert got["mask"].shape == size and got["mask"].dtype == np.int64
        assert (got["mask"] == want["mask"].numpy()).mean() >= MASK_AGREEMENT
        assert got["labels"] == want["labels"] and got["names"] == want["names"]
    assert any(len(want["labels"]) > 1 for want, _ in pairs)  # masks of more than one class
    # the CLI on the real file, where torch cannot be imported: the masks the runner gave
    run = run_without_torch(model, images[0].parent, "--out", tmp_path / "out")
    assert run.returncode == 0, run.stderr[-3000:]
    for path, (_, got) in zip(images, pairs, strict=True):
        with Image.open(tmp_path / "out" / f"{path.stem}_mask.png") as written:
            assert np.array_equal(np.asarray(written), got["mask"])


def test_top_classes_equal_the_predictors(tmp_path, format="onnx"):
    """With bicubic resizing and a crop fraction of its own: the file's metadata carries both."""
    images = write_noise_images(tmp_path / "images", IMAGE_SIZES)
    checkpoint, model = exported("classify", tmp_path, format, interpolation="bicubic", crop_pct=0.95)
    assert load(model).contract.resize_side == int(SIZE / 0.95)
    pairs = both(Classifier, checkpoint, model, images)
    for want, got in pairs:
        assert got["labels"] == want["labels"] and got["names"] == want["names"]
        np.testing.assert_allclose(got["scores"], want["scores"], rtol=0, atol=SCORE_TOLERANCE)
    assert len({tuple(np.round(want["scores"], 4)) for want, _ in pairs}) > 1
