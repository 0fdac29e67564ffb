"""ExecuTorch (`.pte`), PyTorch's on-device runtime, with the XNNPACK delegate; int8 by torch's pt2e flow with
ExecuTorch's `XNNPACKQuantizer`.

The file is `torch.export.export` of the folded model, lowered with `to_edge_transform_and_lower` and
`XnnpackPartitioner` (every supported op runs in XNNPACK, the rest in ExecuTorch's portable kernels), then
`to_executorch()`; it is checked by `executorch.runtime` (the pybindings shipped in the `executorch` wheel), the
runtime an app embeds. A dynamic batch is exported as `Dim("batch", max=MAX_BATCH)`: XNNPACK plans its memory for
the upper bound.

int8: `prepare_pt2e` / `convert_pt2e` (torchao's pt2e, which ExecuTorch's quantizer is written against) with
`XNNPACKQuantizer` set to symmetric per-channel int8 weights and int8 activations (XNNPACK's QS8 kernels), calibrated
on the train-split batches; modules named by the float scopes (the detector's `decode`) are left float.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from deploy.runtimes.base import Loaded, Runtime, as_tensor, optional_import, register_runtime

INSTALL = "pip install -e '.[executorch]'"
MAX_BATCH = 64  # the upper bound of a dynamic batch


def import_executorch() -> Any:
    """`executorch.runtime`."""
    return optional_import("executorch.runtime", "--format executorch needs the executorch package", INSTALL)


def exported_program(model: nn.Module, example: Tensor, dynamic_batch: bool) -> Any:
    """`torch.export.export` of `model` on `example`, with a dynamic batch dimension when asked.

    Parameters go in contiguous (a copy of the model): XNNPACK's layout pass expects NCHW weights, and the stem's
    weight is kept channels-last by the backbone.
    """
    if any(not p.is_contiguous() for p in model.parameters()):
        model = copy.deepcopy(model)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.data = parameter.data.contiguous()
    dynamic = ({0: torch.export.Dim("batch", min=1, max=MAX_BATCH)},) if dynamic_batch else None
    return torch.export.export(model, (example,), dynamic_shapes=dynamic, strict=False)


def write_pte(program: Any, path: Path) -> None:
    """Lower an exported program to XNNPACK and write the ExecuTorch program to `path`."""
    import_executorch()
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
    Path(path).write_bytes(lowered.buffer)


class ExecuTorchModel(Loaded):
    """The `forward` method of a loaded ExecuTorch program; `method` is there for ExecuTorch's own API."""

    def __init__(self, method: Any) -> None:
        self.method = method

    def run(self, images: Tensor | np.ndarray) -> list[Tensor]:
        outputs = self.method.execute([as_tensor(images).contiguous()])
        return [torch.as_tensor(output).clone() for output in outputs]


@register_runtime
class ExecuTorchRuntime(Runtime):
    name = "executorch"
    suffix = ".pte"
    loader = "executorch.runtime, XNNPACK"

    def prepare(self, **options: Any) -> dict[str, Any]:
        options = super().prepare(**options)
        import_executorch()
        return options

    def export(
        self, model: nn.Module, example: Tensor, path: Path, outputs: Sequence[str], dynamic_batch: bool
    ) -> None:
        """torch.export, XNNPACK lowering, `.pte`; outputs come in the model's order (`outputs` names them)."""
        if dynamic_batch and len(example) > MAX_BATCH:
            raise ValueError(f"--batch_size {len(example)} is above the dynamic batch bound {MAX_BATCH}")
        write_pte(exported_program(model, example, dynamic_batch), path)

    def load(self, path: str | Path) -> ExecuTorchModel:
        runtime = import_executorch()
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such ExecuTorch program")
        program = runtime.Runtime.get().load_program(path)
        return ExecuTorchModel(program.load_method("forward"))

    def quantize(
        self,
        model: nn.Module,
        fp32_path: str | Path,
        int8_path: str | Path,
        batches: Sequence[np.ndarray],
        float_scopes: Sequence[str] = (),
        *,
        dynamic_batch: bool = True,
        batch_size: int = 1,
    ) -> Path:
        """int8 `.pte` of `model` by pt2e with `XNNPACKQuantizer` (see the module docstring), calibrated on
        `batches`, exported as the fp32 file was (`batch_size`, or a dynamic batch); `fp32_path` is unused."""
        import_executorch()
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        if not batches:
            raise ValueError("quantization needs at least one calibration batch")
        calibration = torch.cat([torch.from_numpy(np.ascontiguousarray(b, dtype=np.float32)) for b in batches])
        example = calibration[:batch_size]
        quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
        modules = dict(model.named_modules())
        for scope in float_scopes:
            if scope.strip("/") in modules:
                quantizer.set_module_name(scope.strip("/"), None)
        prepared = prepare_pt2e(exported_program(model, example, True).module(), quantizer)
        with torch.no_grad():
            for batch in torch.split(calibration, max(len(b) for b in batches)):
                prepared(batch)
        converted = convert_pt2e(prepared)
        int8_path = Path(int8_path)
        write_pte(exported_program(converted, example, dynamic_batch), int8_path)
        try:
            self.load(int8_path).run(example)
        except RuntimeError as error:
            raise ValueError(
                f"{int8_path}: the int8 ExecuTorch program was written but does not run in executorch.runtime "
                f"({error}); ops left outside the XNNPACK delegate (the backbone's channels-last copies, "
                "as_strided_copy) have no int8 kernels in the pip wheel's runtime. Use --format openvino or onnx "
                "for int8."
            ) from error
        return int8_path
