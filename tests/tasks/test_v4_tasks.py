"""A V4-Hybrid task checkpoint (attention, layer scale, every UIB form) goes every route a V3 one goes: its task's
predictor reads it and predicts raw images, and `export --int8` writes the fp32 and int8 files and scores both."""

from __future__ import annotations

import numpy as np
import pytest

from tasks import get_task
from tasks.common.cli import run_cli
from tests.helpers import tiny_task, write_checkpoint

pytestmark = pytest.mark.slow  # three exports and calibrations of an 11M-parameter hybrid: 10-20 s each


@pytest.mark.parametrize("task", ["classify", "detect", "segment"])
def test_a_v4_hybrid_checkpoint_predicts_and_exports_int8(task, tmp_path):
    module, data = tiny_task(task, tmp_path / "cache", backbone="v4_hybrid_medium")
    checkpoint = write_checkpoint(tmp_path / "last.ckpt", module, data)
    predictor = get_task(task).predictor.from_checkpoint(checkpoint)
    image = np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    (result,) = predictor.predict([image])
    assert result
    flags = ["--int8", "--calibration_batches", "1", "--calibration_batch_size", "2"]
    exported = run_cli(task, ["export", "--ckpt_path", str(checkpoint), *flags])
    assert (tmp_path / "last.onnx").is_file() and (tmp_path / "last.int8.onnx").is_file()
    assert exported.figures["calibration_images"] == 2
