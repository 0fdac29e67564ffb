"""`torch.compile` of the task networks, as `--model.compile true` and the predictors' `compile=True` run them.

A detector's eval forward ends in per-image detections whose counts the data decides (`heads.detection_postprocess.
unpadded` reads them with `.tolist()`); dynamo traces that into the graph only with `capture_scalar_outputs`, so the
compiled callable runs under that setting, and the process's dynamo configuration is left as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

DYNAMO_SETTINGS = {"capture_scalar_outputs": True}


def compiled(model: nn.Module) -> Callable[..., Any]:
    """`torch.compile(model)` (inductor), called under `DYNAMO_SETTINGS`. The compiled callable shares `model`'s
    parameters and leaves its state-dict keys unchanged: keep it outside the registered submodules."""
    return torch._dynamo.config.patch(**DYNAMO_SETTINGS)(torch.compile(model))
