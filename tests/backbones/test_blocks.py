"""The inverted-residual block frees its expansion as soon as the depthwise has consumed it."""

import weakref

import torch

from backbones.blocks import InvertedResidual


def test_forward_frees_the_expansion_before_the_projection_and_the_tap_path_keeps_it():
    block = InvertedResidual(16, 64, 16, kernel=3, activation="hardswish", squeeze_excite=True).eval()
    expansions: list[weakref.ref] = []
    alive_at_projection: list[bool] = []
    block.expand.register_forward_hook(lambda module, inputs, output: expansions.append(weakref.ref(output)))
    block.project.register_forward_pre_hook(
        lambda module, inputs: alive_at_projection.append(expansions[-1]() is not None)
    )
    x = torch.randn(2, 16, 8, 8)
    with torch.inference_mode():
        out = block(x)
        tapped, expanded = block.forward_with_expansion(x)
    assert alive_at_projection == [False, True]
    assert torch.equal(out, tapped) and expanded.shape == (2, 64, 8, 8)
