"""ExecuTorch (`.pte`), PyTorch's on-device runtime, with the XNNPACK delegate; int8 by torch's pt2e flow with
ExecuTorch's `XNNPACKQuantizer`.

The file is `torch.export.export` of the folded model in plain NCHW layout (`exported_program` says why: exported
channels-last, the network is cut into one XNNPACK delegate per squeeze-excitation, and int8 fails to run), lowered
with `to_edge_transform_and_lower` and `XnnpackPartitioner` (every supported op runs in XNNPACK, the rest in
ExecuTorch's portable kernels), then `to_executorch()`; it is checked by `executorch.runtime` (the pybindings
shipped in the `executorch` wheel), the runtime an app embeds. A dynamic batch is exported as
`Dim("batch", max=MAX_BATCH)`, which lowering narrows (`exported_program`): the program plans its memory for the
narrowed bound, and `ExecuTorchModel` runs larger batches in pieces of it.

int8: `prepare_pt2e` / `convert_pt2e` (torchao's pt2e, which ExecuTorch's quantizer is written against) with
`XNNPACKQuantizer` set to symmetric per-channel int8 weights and int8 activations (XNNPACK's QS8 kernels), calibrated
on the train-split batches; modules named by the float scopes (the detector's `decode`) are left float. The whole
network (convolutions, hard-swish, the squeeze-excitation gates, residual adds, the classifier's linear layers) runs
in XNNPACK's int8 kernels; with a dynamic batch the flatten before the classifier's linear layers stays outside
(a view whose size is the batch), so there are two delegates.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from deploy.runtimes.base import (
    Loaded,
    Runtime,
    as_tensor,
    batch_example,
    nchw_module,
    optional_import,
    register_runtime,
)

INSTALL = "pip install -e '.[executorch]'"
MAX_BATCH = 64  # the upper bound of a dynamic batch


# executorch's own notices that a user cannot act on: its legacy importlib.resources calls and its pybindings'
# "experimental" note (filtered by message and module, and not at all when the user chose -W or PYTHONWARNINGS)
_NOTICES = (
    (r"(read_text|read_binary|open_text) is deprecated\. Use files\(\) instead", r"(executorch\..*|importlib\..*)"),
    (r"This API is experimental and subject to change", r"executorch\..*"),
)


def quiet_executorch_notices() -> None:
    """Filter `_NOTICES` unless the user chose their own warning filters."""
    if not (sys.warnoptions or os.environ.get("PYTHONWARNINGS")):
        for message, module in _NOTICES:
            warnings.filterwarnings("ignore", message=message, module=module)


def import_executorch() -> Any:
    """`executorch.runtime`, with `_NOTICES` filtered."""
    quiet_executorch_notices()
    return optional_import("executorch.runtime", "--format executorch needs the executorch package", INSTALL)


def exported_program(model: nn.Module, example: Tensor, dynamic_batch: bool) -> Any:
    """`torch.export.export` of `model` on `example` in plain NCHW layout (`nchw_module`), with a dynamic batch
    dimension when asked.

    Exported channels-last, the program is cut at every squeeze-excitation (XNNPACK takes no `as_strided_copy`):
    one delegate each (11 for V3-Small) with portable ops between them. fp32 survives that, slower; in int8 the
    cuts pass int8 tensors from one delegate to the next, and the program fails at run time in a later delegate's
    input-shape propagation (`xnn_status_invalid_parameter`, `CALL_DELEGATE` error 0x1). In NCHW the whole network
    is one delegate.

    A dynamic batch is traced on a batch of 2 (`batch_example`). Lowering re-runs torch's fake convolution, whose
    CPU backend choice asks `batch >= 16` for 1x1 convolutions (`use_mkldnn`); the guard takes the traced side, so
    the program accepts batches 1-15 (its planned input size; `ExecuTorchModel` runs larger batches in pieces),
    where one traced at 16 or more would refuse every batch under 16.
    """
    if dynamic_batch:
        example = batch_example(example)
    dynamic = ({0: torch.export.Dim("batch", min=1, max=MAX_BATCH)},) if dynamic_batch else None
    module = nchw_module(model, example, dynamic)
    return torch.export.export(module, (example,), dynamic_shapes=dynamic, strict=False)


def write_pte(program: Any, path: Path) -> None:
    """Lower an exported program to XNNPACK and write the ExecuTorch program to `path`."""
    import_executorch()
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
    Path(path).write_bytes(lowered.buffer)


class ExecuTorchModel(Loaded):
    """The `forward` method of a loaded ExecuTorch program; `method` is there for ExecuTorch's own API.

    A batch above the program's planned input size (`max_batch`, which for a dynamic batch is the bound that XNNPACK
    lowering left, see `exported_program`) is run in pieces of that size.
    """

    def __init__(self, method: Any) -> None:
        self.method = method
        self.max_batch = int(method.metadata.input_tensor_meta(0).sizes()[0])

    def run(self, images: Tensor | np.ndarray) -> list[Tensor]:
        pieces = [self._run(piece) for piece in torch.split(as_tensor(images), self.max_batch)]
        return [torch.cat(outputs) for outputs in zip(*pieces, strict=True)]

    def _run(self, images: Tensor) -> list[Tensor]:
        outputs = self.method.execute([images.contiguous()])
        return [torch.as_tensor(output).clone() for output in outputs]


@register_runtime
class ExecuTorchRuntime(Runtime):
    name = "executorch"
    suffix = ".pte"
    nms = False  # no NonMaxSuppression operator: end-to-end detectors stop after decoding
    any_size = False
    loader = "executorch.runtime, XNNPACK"

    def prepare(self, **options: Any) -> dict[str, Any]:
        options = super().prepare(**options)
        import_executorch()
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
        """int8 `.pte` of `model` (`quantized_program`), calibrated on `batches`, exported as the fp32 file was
        (`batch_size`, or a dynamic batch) and run once by executorch.runtime; `fp32_path` is unused."""
        import_executorch()
        program = quantized_program(model, batches, float_scopes, dynamic_batch=dynamic_batch, batch_size=batch_size)
        int8_path = Path(int8_path)
        write_pte(program, int8_path)
        example = torch.from_numpy(np.ascontiguousarray(batches[0][:batch_size], dtype=np.float32))
        try:  # the check every export gets: the file runs in the runtime an app embeds
            self.load(int8_path).run(example)
        except RuntimeError as error:
            raise ValueError(
                f"{int8_path}: the int8 ExecuTorch program was written but does not run in executorch.runtime ({error})"
            ) from error
        return int8_path


def quantized_program(
    model: nn.Module,
    batches: Sequence[np.ndarray],
    float_scopes: Sequence[str] = (),
    *,
    dynamic_batch: bool = True,
    batch_size: int = 1,
) -> Any:
    """The exported int8 program of `model`, before lowering: pt2e with `XNNPACKQuantizer` (symmetric, per-channel
    int8 weights, int8 activations) calibrated on `batches`; modules named by `float_scopes` (`/decode/`, written as
    the ONNX scopes are) are not annotated, so they stay float."""
    quiet_executorch_notices()
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import get_module_name_filter

    if not batches:
        raise ValueError("quantization needs at least one calibration batch")
    calibration = [torch.from_numpy(np.ascontiguousarray(b, dtype=np.float32)) for b in batches]
    example = calibration[0][:batch_size]
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    # `set_module_name(name, None)`, the documented way to leave a module float, asserts in ExecuTorch 1.x
    # ("quantization_config == None is not supported yet"); a filter that skips the scopes' nodes does it
    modules = dict(model.named_modules())
    in_float_scope = [get_module_name_filter(s.strip("/")) for s in float_scopes if s.strip("/") in modules]
    if in_float_scope:
        quantizer.set_filter_function(lambda node: not any(inside(node) for inside in in_float_scope))
    prepared = prepare_pt2e(exported_program(model, example, True).module(), quantizer)
    with torch.no_grad():
        for batch in calibration:
            for piece in torch.split(batch, MAX_BATCH):  # the prepared graph keeps the export's batch range
                prepared(piece)
    return exported_program(convert_pt2e(prepared), example, dynamic_batch)
