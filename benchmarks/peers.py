"""The reference models each benchmark runs beside ours: timm's (every version) and torchvision's (V2, V3)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import timm
import torch
import torchvision
from torch import nn

from backbones import create_classifier

TIMM_NAMES = {
    "v1": "mobilenetv1_100",
    "v2": "mobilenetv2_100",
    "v3_large": "mobilenetv3_large_100",
    "v3_small": "mobilenetv3_small_100",
    "v4_conv_small": "mobilenetv4_conv_small",
    "v4_conv_medium": "mobilenetv4_conv_medium",
    "v4_conv_large": "mobilenetv4_conv_large",
    "v4_hybrid_medium": "mobilenetv4_hybrid_medium",
    "v4_hybrid_large": "mobilenetv4_hybrid_large",
}
TORCHVISION_BUILDERS: dict[str, Callable[[], nn.Module]] = {
    "v2": torchvision.models.mobilenet_v2,
    "v3_large": torchvision.models.mobilenet_v3_large,
    "v3_small": torchvision.models.mobilenet_v3_small,
}
# backbone -> {library: builder}; torchvision first where it has the model
PEERS: dict[str, dict[str, Callable[[], nn.Module]]] = {
    name: {
        **({"torchvision": TORCHVISION_BUILDERS[name]} if name in TORCHVISION_BUILDERS else {}),
        "timm": partial(timm.create_model, timm_name),
    }
    for name, timm_name in TIMM_NAMES.items()
}


def ours_from_peer(name: str, peer: nn.Module, folder: Path, example: torch.Tensor) -> tuple[nn.Module, float]:
    """Our classifier built from the peer's state dict saved to disk, as a user converts published weights (its
    variant options, e.g. timm V1's ReLU6, come from the file): both then compute the same numbers, so a time
    difference is the graph's, and no random start gives one of them more denormal floats than the other. Returns it
    and the largest |logit difference| to the peer on `example`."""
    path = folder / f"{name}_peer.pth"
    torch.save(peer.state_dict(), path)
    ours = create_classifier(name, weights=str(path)).eval()
    with torch.inference_mode():
        return ours, float((ours(example) - peer(example)).abs().max())
