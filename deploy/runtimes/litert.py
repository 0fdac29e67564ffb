"""LiteRT (TFLite, `.tflite`), converted by litert-torch (`litert_torch.convert(model, (example,)).export(path)`)
and checked by LiteRT's own interpreter (`ai_edge_litert.interpreter.Interpreter`, which litert-torch installs).

The model is converted in plain NCHW layout (`nchw_module`); the file keeps the PyTorch model's NCHW input and
output layouts (litert-torch inserts the transposes) and has the example's batch size. `load` runs any other batch
in pieces of that size (`FixedBatch`), so `dynamic_batch` changes nothing in the file: litert-torch 0.10 cannot
convert a dynamic batch (`dynamic_shapes`) of these models (its JAX lowering of a reshape whose size is the batch,
the classifier's flatten and the detector's decoding, needs concrete sizes), and resizing the input of a converted
file (`resize_tensor_input`) fails for the detector, whose decoding reshapes keep the converted batch.

Not in the default or dev install: no litert-torch co-installs with torch 2.14.1 and this environment.
litert-torch 0.10.0 (the newest) asks torch<2.15, but its litert-converter 0.5.0 pins xdsl==0.28.0, which asks
typing-extensions<4.13: pip would downgrade typing_extensions 4.16.0 -> 4.12.2 and with it pydantic 2.13.4 ->
2.11.10, pydantic_core 2.46.4 -> 2.33.2 and anyio 4.16.0 -> 4.14.2 (pydantic 2.13 asks typing-extensions>=4.14.1,
anyio 4.16 >=4.16), and leave cattrs 26.2.1 (>=4.14) broken; it also brings jax, jaxlib, transformers and
kagglehub. litert-torch 0.9.4 asks torch<2.14 (pip picks torch 2.13.0), 0.9.0 torch<2.12, 0.8.0 torch 2.9.1.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from deploy.runtimes.base import (
    FixedBatch,
    Loaded,
    Runtime,
    as_array,
    nchw_module,
    optional_import,
    register_runtime,
)

INSTALL = "pip install -e '.[litert]'"


def import_litert_torch() -> Any:
    return optional_import("litert_torch", "--format litert needs litert-torch", INSTALL)


def interpreter_class() -> Any:
    return optional_import("ai_edge_litert.interpreter", "running a .tflite needs ai-edge-litert", INSTALL).Interpreter


class LiteRtModel(Loaded):
    """A LiteRT interpreter on the file, run at the file's own batch size; `interpreter` is there for LiteRT's own
    API. `LiteRtRuntime.load` wraps it in `FixedBatch` for other batch sizes."""

    def __init__(self, interpreter: Any) -> None:
        self.interpreter = interpreter
        self.interpreter.allocate_tensors()
        (self.input,) = self.interpreter.get_input_details()
        self.batch_size = int(self.input["shape"][0])

    def run(self, images: Tensor | np.ndarray) -> list[Tensor]:
        array = as_array(images)
        if array.shape != tuple(self.input["shape"]):
            raise ValueError(f"this LiteRT file takes input {list(self.input['shape'])}, got {list(array.shape)}")
        self.interpreter.set_tensor(self.input["index"], array)
        self.interpreter.invoke()
        outputs = self.interpreter.get_output_details()
        return [torch.from_numpy(self.interpreter.get_tensor(output["index"]).copy()) for output in outputs]


@register_runtime
class LiteRtRuntime(Runtime):
    name = "litert"
    suffix = ".tflite"
    nms = False  # no NonMaxSuppression operator: end-to-end detectors stop after decoding
    any_size = False
    loader = "ai_edge_litert interpreter"

    def prepare(self, **options: Any) -> dict[str, Any]:
        options = super().prepare(**options)
        import_litert_torch()
        interpreter_class()
        return options

    def export(
        self,
        model: nn.Module,
        example: Tensor,
        path: Path,
        outputs: Sequence[str],
        dynamic_batch: bool,
        dynamic_size: bool = False,
    ) -> None:
        """litert_torch.convert of the model in plain NCHW layout on `example`, exported to `path`; outputs come in
        the model's order. The file has the example's batch size, also with `dynamic_batch` (module docstring)."""
        litert_torch = import_litert_torch()
        litert_torch.convert(nchw_module(model.eval(), example), (example,)).export(str(path))

    def load(self, path: str | Path, threads: int | None = None) -> FixedBatch:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such .tflite file")
        model = LiteRtModel(interpreter_class()(model_path=str(path), num_threads=threads))
        return FixedBatch(model, model.batch_size)
