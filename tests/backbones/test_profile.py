"""Sizes against the papers' tables and torchvision's exact counts."""

import pytest
import timm
import torch
from torch import nn

from backbones import create_classifier
from backbones.profile import (
    MADDS_ROUNDING_M,
    PAPER_FIGURES,
    PARAMS_ROUNDING_M,
    TIMM_PARAMS,
    TOLERANCE,
    TORCHVISION_PARAMS,
    count_madds,
    count_parameters,
    figure_errors,
    profile_row,
    relative_error,
)


@pytest.mark.parametrize("figure", PAPER_FIGURES, ids=lambda f: f"{f.name}-{f.width}-{f.resolution}")
def test_params_and_madds_match_the_paper(figure):
    params_error, madds_error = figure_errors(figure, profile_row(figure))
    assert madds_error <= figure.tolerance
    assert params_error is None or params_error <= figure.tolerance


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_parameter_counts_equal_torchvision(name):
    assert count_parameters(create_classifier(name)) == TORCHVISION_PARAMS[name]


@pytest.mark.parametrize("name", sorted(TIMM_PARAMS))
def test_parameter_counts_equal_timm(name):
    reference = timm.create_model(f"mobilenet{name}", pretrained=False)
    assert count_parameters(create_classifier(name)) == count_parameters(reference) == TIMM_PARAMS[name]


def test_madds_counter_on_a_hand_counted_model():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),  # 8 x 4 x 4 outputs, 27 MACs each
        nn.Conv2d(8, 8, 3, padding=1, groups=8),  # 8 x 4 x 4 outputs, 9 MACs each
        nn.Flatten(),
        nn.Linear(128, 10),  # 10 outputs, 128 MACs each
    )
    assert count_madds(model, 8) == 128 * 27 + 128 * 9 + 10 * 128


def test_rounding_allowance_is_not_a_loophole():
    assert relative_error(3.5, 3.4, PARAMS_ROUNDING_M) == pytest.approx(0.05 / 3.4)
    assert relative_error(569.4, 569, MADDS_ROUNDING_M) == 0.0
    assert relative_error(600, 569, MADDS_ROUNDING_M) > TOLERANCE


def test_madds_scale_with_resolution_squared():
    model = create_classifier("v1", width=0.25)
    small, large = count_madds(model, 128), count_madds(model, 256)
    fc = 256 * 1000
    assert (large - fc) == pytest.approx(4 * (small - fc), rel=1e-6)
    assert torch.is_grad_enabled()  # counting leaves autograd as it was
