"""LiteRT (TFLite, `.tflite`), converted by litert-torch (`litert_torch.convert(model, (example,)).export(path)`)
and checked by LiteRT's own interpreter (`ai_edge_litert.interpreter.Interpreter`, which litert-torch installs).

The file keeps the PyTorch model's NCHW input and output layouts (litert-torch inserts the transposes), and has the
example's batch size; `load` resizes the input (`resize_tensor_input`) when a batch of another size comes, which the
interpreter supports for these fully convolutional graphs, so `dynamic_batch` needs nothing at export time.

Not in the default or dev install: litert-torch 0.10.0 (the newest) co-installs with torch 2.14.1 (it asks
torch<2.15), but pins typing_extensions 4.12.2 and pydantic 2.11 through ai-edge-litert, downgrading what the rest of
the environment has (typing_extensions 4.16, pydantic 2.13), and brings jax, transformers and kagglehub along.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from deploy.runtimes.base import Loaded, Runtime, as_array, optional_import, register_runtime

INSTALL = "pip install -e '.[litert]'"


def import_litert_torch() -> Any:
    return optional_import("litert_torch", "--format litert needs litert-torch", INSTALL)


def interpreter_class() -> Any:
    return optional_import("ai_edge_litert.interpreter", "running a .tflite needs ai-edge-litert", INSTALL).Interpreter


class LiteRtModel(Loaded):
    """A LiteRT interpreter on the file; `interpreter` is there for LiteRT's own API."""

    def __init__(self, interpreter: Any) -> None:
        self.interpreter = interpreter
        self.interpreter.allocate_tensors()

    def run(self, images: Tensor | np.ndarray) -> list[Tensor]:
        array = as_array(images)
        (input_detail,) = self.interpreter.get_input_details()
        if tuple(input_detail["shape"]) != array.shape:
            self.interpreter.resize_tensor_input(input_detail["index"], list(array.shape))
            self.interpreter.allocate_tensors()
        self.interpreter.set_tensor(input_detail["index"], array)
        self.interpreter.invoke()
        outputs = self.interpreter.get_output_details()
        return [torch.from_numpy(self.interpreter.get_tensor(output["index"]).copy()) for output in outputs]


@register_runtime
class LiteRtRuntime(Runtime):
    name = "litert"
    suffix = ".tflite"
    loader = "ai_edge_litert interpreter"

    def prepare(self, **options: Any) -> dict[str, Any]:
        options = super().prepare(**options)
        import_litert_torch()
        interpreter_class()
        return options

    def export(
        self, model: nn.Module, example: Tensor, path: Path, outputs: Sequence[str], dynamic_batch: bool
    ) -> None:
        """litert_torch.convert on `example`, exported to `path`; outputs come in the model's order."""
        litert_torch = import_litert_torch()
        litert_torch.convert(model.eval(), (example,)).export(str(path))

    def load(self, path: str | Path, threads: int | None = None) -> LiteRtModel:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such .tflite file")
        return LiteRtModel(interpreter_class()(model_path=str(path), num_threads=threads))
