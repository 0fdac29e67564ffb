"""The reference models each benchmark runs beside ours: timm's (every version) and torchvision's (V2, V3)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import timm
import torchvision
from torch import nn

TIMM_NAMES = {
    "v1": "mobilenetv1_100",
    "v2": "mobilenetv2_100",
    "v3_large": "mobilenetv3_large_100",
    "v3_small": "mobilenetv3_small_100",
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
