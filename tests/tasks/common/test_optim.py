import math

import pytest
import torch

from tasks.common.optim import RMSPROP, build_optimizer, warmup_then_decay


def test_warmup_rises_linearly_to_one():
    assert warmup_then_decay(0, 10, 100, "cosine") == pytest.approx(0.001)
    assert warmup_then_decay(5, 10, 100, "cosine") == pytest.approx(0.001 + 0.999 * 0.5)
    assert warmup_then_decay(10, 10, 100, "cosine") == pytest.approx(1.0)


def test_cosine_and_poly_reach_zero_at_the_end():
    assert warmup_then_decay(55, 10, 100, "cosine") == pytest.approx(0.5)
    assert warmup_then_decay(100, 10, 100, "cosine") == pytest.approx(0.0)
    assert warmup_then_decay(55, 10, 100, "poly") == pytest.approx(0.5**0.9)
    assert warmup_then_decay(100, 10, 100, "poly") == pytest.approx(0.0)


@pytest.mark.parametrize("rate, every", [(0.98, 1.0), (0.973, 2.0)])  # the V2 and V3 papers' staircases
def test_exponential_decay_is_a_staircase_per_epochs(rate, every):
    steps_per_epoch = 7
    for epoch in range(6):
        for within in (0, steps_per_epoch - 1):
            step = epoch * steps_per_epoch + within
            expected = rate ** math.floor(epoch / every)
            assert warmup_then_decay(step, 0, 10**6, "exponential", steps_per_epoch, rate, every) == pytest.approx(
                expected
            )


def test_rmsprop_uses_tensorflow_settings():
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(2))], "rmsprop", 0.064, 0.9, 1e-5)
    group = optimizer.param_groups[0]
    assert isinstance(optimizer, torch.optim.RMSprop)
    assert (group["alpha"], group["eps"], group["momentum"], group["weight_decay"]) == (
        RMSPROP["alpha"],
        RMSPROP["eps"],
        0.9,
        1e-5,
    )
    with pytest.raises(ValueError, match="unknown optimizer 'lamb'; valid: sgd, adamw, rmsprop"):
        build_optimizer([], "lamb", 0.1, 0.9, 0.0)
