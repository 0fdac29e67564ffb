"""`best_inference_form`: the peer's outputs, no batch norm left where a conv feeds one, a wrong fold refused."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import timm
import torch
import torchvision
from torch import Tensor, nn

from benchmarks.best_form import best_inference_form, channels_last
from benchmarks.peers import TIMM_NAMES
from tests.helpers import randomize_norms, with_batch_statistics

PEERS: dict[str, Callable[[], nn.Module]] = {
    # conv and BatchNormAct2d (ReLU6 inside) as a block's attributes, where `fuse` does not look
    "timm_v1": lambda: timm.create_model(TIMM_NAMES["v1"], num_classes=10),
    # timm's ConvNormAct in universal inverted bottlenecks
    "timm_v4_conv_small": lambda: timm.create_model(TIMM_NAMES["v4_conv_small"], num_classes=10),
    # Conv2dNormActivation: the pairs `fuse` folds
    "torchvision_v3_small": lambda: torchvision.models.mobilenet_v3_small(width_mult=0.5, num_classes=10),
}

# |best form - as built| <= FOLDED * max|as built|: a folded weight is rounded once more, layer after layer (measured
# up to 2.7e-5 of the scale: timm's V1 at 64 px); a norm left out or folded twice moves outputs by a sizeable fraction
FOLDED = 1e-4


def norms(model: nn.Module) -> int:
    """BatchNorm2d modules, timm's BatchNormAct2d (a subclass) included."""
    return sum(isinstance(module, nn.BatchNorm2d) for module in model.modules())


@pytest.mark.parametrize("name", list(PEERS))
def test_the_best_form_folds_every_norm_and_computes_the_peers_outputs(name: str) -> None:
    generator = torch.Generator().manual_seed(0)
    # affine terms far from (1, 0) and the statistics of real inputs, far from (0, 1) too: a norm left out or
    # folded twice shows, and no activation drifts to denormal floats
    peer = with_batch_statistics(randomize_norms(PEERS[name]()), torch.randn(4, 3, 64, 64, generator=generator))
    x = torch.randn(2, 3, 64, 64, generator=generator)
    before = norms(peer)
    best = best_inference_form(peer, x)
    assert norms(best) == 0 < before == norms(peer)  # every norm of these follows a conv; the peer keeps its own
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in best.parameters() if p.dim() == 4)
    with torch.inference_mode():
        want, have = peer(x), best(channels_last(x))
    scale = float(want.abs().max())
    torch.testing.assert_close(have, want, rtol=FOLDED, atol=FOLDED * scale)


class PreNormResidual(nn.Module):
    """A conv whose output is both normalised and added back: folding the norm into the conv would change the sum."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.norm = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        return self.norm(y) + y


def test_a_fold_that_changes_the_outputs_is_refused() -> None:
    model = randomize_norms(PreNormResidual())
    with pytest.raises(ValueError, match="PreNormResidual: output 0 .* a fold is wrong"):
        best_inference_form(model, torch.randn(1, 3, 8, 8))
