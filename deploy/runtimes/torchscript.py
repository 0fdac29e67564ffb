"""TorchScript: `torch.jit.trace`, saved and reloaded with `torch.jit.load` (deprecated in torch >= 2.9, still
what TorchScript runtimes load)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from deploy.runtimes.base import Loaded, Runtime, as_tensor, output_list, register_runtime


def load_torchscript(path: str | Path) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.* is deprecated.*", category=FutureWarning)
        return torch.jit.load(str(path), map_location="cpu")


class TorchScriptModel(Loaded):
    """A reloaded TorchScript module, run under `torch.inference_mode`."""

    def __init__(self, module: torch.jit.ScriptModule) -> None:
        self.module = module

    def run(self, images: Tensor | np.ndarray) -> list[Tensor]:
        with torch.inference_mode():
            return output_list(self.module(as_tensor(images)))


@register_runtime
class TorchScriptRuntime(Runtime):
    name = "torchscript"
    suffix = ".torchscript.pt"
    loader = "torch.jit.load"

    def export(
        self,
        model: nn.Module,
        example: Tensor,
        path: Path,
        outputs: Sequence[str],
        dynamic_batch: bool,
        dynamic_size: bool = False,
    ) -> None:
        """torch.jit.trace; a traced module takes any batch size and input size, so `dynamic_batch`, `dynamic_size`
        and `outputs` (the outputs come in the model's order) need nothing here."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            # the end-to-end detector's NMS loop is scripted where traced (`torch.jit.script_if_tracing`)
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated.*", category=FutureWarning)
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.trace.* is deprecated.*", category=FutureWarning)
            traced = torch.jit.trace(model, example, check_trace=False)
        traced.save(str(path))

    def load(self, path: str | Path) -> TorchScriptModel:
        return TorchScriptModel(load_torchscript(path))
