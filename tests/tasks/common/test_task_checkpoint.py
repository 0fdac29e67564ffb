"""Checkpoints record the task and model name that wrote them; checkpoints written before they did (kept in
tests/fixtures/legacy) still load, into the same network, and either kind loaded as another task is a named error."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from tasks import get_task, model_name
from tasks.common.task_checkpoint import load_task
from tests.helpers import tiny_task

LEGACY = Path(__file__).resolve().parents[2] / "fixtures" / "legacy"
TASKS = ("classify", "detect", "segment")


def flat_outputs(output) -> list[torch.Tensor]:
    """The outputs as tensors; the detector's, a dict per image, in one order whatever the order of rows of equal
    scores (by score, then label, then box)."""
    if isinstance(output, torch.Tensor):
        return [output]
    flat = []
    for item in output:
        rows = torch.cat([item["scores"][:, None], item["labels"][:, None].float(), item["boxes"]], 1).double()
        order = sorted(range(len(rows)), key=lambda i: (-rows[i, 0].item(), *rows[i, 1:].tolist()))
        flat += [item[key][order] for key in item]
    return flat


@pytest.mark.parametrize("task", TASKS)
def test_a_checkpoint_records_its_task_and_model_name(task, tmp_path):
    module, data = tiny_task(task, tmp_path / "cache")
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, limit_val_batches=1)
    trainer.validate(module, datamodule=data, verbose=False)
    trainer.save_checkpoint(tmp_path / "run.ckpt")
    saved = torch.load(tmp_path / "run.ckpt", weights_only=True)
    assert saved["task"] == task
    assert saved["model"] == model_name(task, **module.hparams)
    assert saved["model"] in {"v3_small", "ssdlite320_v3_small", "lraspp_v3_small"}


@pytest.mark.parametrize("task", TASKS)
def test_a_legacy_checkpoint_loads_into_the_same_network(task):
    saved = torch.load(LEGACY / f"{task}.ckpt", weights_only=True)
    assert "task" not in saved and "model" not in saved  # written before checkpoints recorded them
    reference = torch.load(LEGACY / f"{task}_output.pt", weights_only=True)
    module = load_task(task, LEGACY / f"{task}.ckpt").module
    assert type(module) is get_task(task).module
    with torch.no_grad():
        outputs = flat_outputs(module.model(reference["input"]))
    expected = flat_outputs(reference["output"])
    assert len(outputs) == len(expected)
    for got, want in zip(outputs, expected, strict=True):
        scale = max(float(want.abs().max()), 1.0) if want.is_floating_point() else 0.0
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("task", TASKS)
def test_a_legacy_checkpoint_of_another_task_names_its_task(task):
    other = next(t for t in TASKS if t != task)
    with pytest.raises(ValueError, match=rf"is a {task} task checkpoint, not a {other} one .*tasks\.{task}"):
        load_task(other, LEGACY / f"{task}.ckpt", how="python -m tasks.{task} export")


def test_a_checkpoint_recording_another_task_names_it(tmp_path):
    saved = torch.load(LEGACY / "classify.ckpt", weights_only=True)
    saved["task"] = "detect"  # what the detection task would have recorded
    torch.save(saved, tmp_path / "recorded.ckpt")
    with pytest.raises(
        ValueError, match=r"is a detect task checkpoint, not a classify one \(it records task 'detect'\)"
    ):
        load_task("classify", tmp_path / "recorded.ckpt")


@pytest.mark.parametrize("task", TASKS)
def test_a_legacy_checkpoint_predicts(task, tmp_path):
    predictor = get_task(task).predictor.from_checkpoint(LEGACY / f"{task}.ckpt")
    (result,) = predictor.predict(torch.zeros(3, 40, 56, dtype=torch.uint8))
    assert result  # one result for the one image, in that image's own pixels
