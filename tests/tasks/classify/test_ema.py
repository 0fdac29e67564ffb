"""`recompute_norm_statistics`, which gives the moving average of the weights batch-norm statistics of its own."""

import torch
from torch import nn

from tasks.classify.ema import recompute_norm_statistics


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
