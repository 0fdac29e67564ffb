"""`recompute_norm_statistics`, which gives the moving average of the weights batch-norm statistics of its own."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from tasks.classify.ema import recompute_norm_statistics

REPO = Path(__file__).parents[3]
RECORDER = "tests.tasks.classify.recorded_norms.RecordNormStatistics"


def close(actual: torch.Tensor, expected: torch.Tensor) -> bool:
    return bool((actual - expected).abs().max() <= 1e-5 * expected.abs().max())


def test_statistics_become_the_batches_averages_and_frozen_norms_keep_theirs():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 5, 1), nn.BatchNorm2d(5), nn.Dropout(0.5)
    )
    trained, frozen = model[1], model[4]
    frozen.requires_grad_(False)
    frozen.running_mean.fill_(3.0)
    trained.running_var.fill_(7.0)  # stale statistics, which must not leak into the new ones
    batches = [torch.randn(6, 3, 8, 8) * (i + 1) + i for i in range(3)]
    model.train()

    recompute_norm_statistics(model, batches)

    with torch.no_grad():
        features = [model[0](x) for x in batches]
    # torch's cumulative average (momentum None): each batch's mean and unbiased variance count once
    assert close(trained.running_mean, torch.stack([f.mean((0, 2, 3)) for f in features]).mean(0))
    assert close(trained.running_var, torch.stack([f.var((0, 2, 3)) for f in features]).mean(0))
    assert torch.equal(frozen.running_mean, torch.full((5,), 3.0)) and torch.equal(frozen.running_var, torch.ones(5))
    assert model.training and trained.training and trained.momentum == 0.1 and frozen.momentum == 0.1


def test_eval_mode_is_kept():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval()
    recompute_norm_statistics(model, [torch.randn(2, 3, 8, 8)])
    assert not model.training and not model[1].training


@pytest.mark.slow
def test_two_ranks_validate_the_average_with_the_same_statistics(tmp_path):
    """Under DDP each rank recomputes the average's statistics from its own batches; they are then averaged over
    the ranks, so that both validate, and rank 0 saves, one model."""
    command = [sys.executable, "-m", "tasks.classify", "fit", "--backbone", "v3_small", "--width", "0.5"]
    command += ["--resolution", "32", "--data.synthetic_image_size", "40", "--data.batch_size", "2"]
    command += ["--data.cache_dir", str(tmp_path / "cache"), "--data.synthetic_train_images", "16"]
    command += ["--data.synthetic_val_images", "2", "--data.num_workers", "0", "--trainer.max_epochs", "1"]
    command += ["--model.ema_decay", "0.9", "--trainer.accelerator", "cpu", "--trainer.strategy", "ddp"]
    command += ["--trainer.devices", "2", "--trainer.enable_progress_bar", "false"]
    command += ["--trainer.default_root_dir", str(tmp_path), "--trainer.callbacks+=" + RECORDER]
    command += ["--trainer.callbacks.out_dir", str(tmp_path / "norms")]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    first, second = (torch.load(tmp_path / "norms" / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert first.keys() == second.keys() and first
    for name in first:  # the same numbers on both ranks, to float rounding of the mean over ranks
        assert (first[name] - second[name]).abs().max() <= 1e-6 * first[name].abs().max(), name
