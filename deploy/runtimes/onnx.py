"""ONNX, written by torch's TorchScript-based exporter and run by onnxruntime's CPU provider.

The TorchScript-based exporter (`dynamo=False`) exports these models in about a second where the dynamo exporter
takes ten (v3_small, 2 CPU threads), needs no onnxscript, writes GlobalAveragePool rather than a
Shape/Range/ReduceMean chain, and names nodes by module scope, which `quantize` uses to keep the scopes it is
given (the detection decoding) in float. The exporter is deprecated in torch >= 2.9: the call is in
`OnnxRuntime.export` alone.

int8 (`OnnxRuntime.quantize`) is onnxruntime's `quantize_static`, not torch.ao's PT2E: the deployed artefact is the
ONNX file that was exported and checked, and quantizing that very graph keeps one path from network to runtime. The
QDQ format (QuantizeLinear/DequantizeLinear pairs around float ops) is a plain ONNX file that onnxruntime's CPU
provider fuses into int8 kernels (QLinearConv and friends). Settings: per-channel symmetric int8 weights, uint8
activations (U8S8, the fast pair on x86 with VNNI), MinMax ranges from the calibration batches given.
"""

from __future__ import annotations

import functools
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from deploy.metadata import KEY
from deploy.runtimes.base import INPUT_NAME, Loaded, Runtime, as_array, optional_import, register_runtime

DEFAULT_OPSET = 17
# QuantizeLinear/DequantizeLinear take a per-channel `axis` from opset 13 on: the int8 models need it.
MIN_OPSET = 13


@functools.cache
def max_opset() -> int:
    """The highest opset both the TorchScript-based exporter and the installed onnx know (a function: importing onnx
    takes half a second that a process which exports nothing should not pay)."""
    from torch.onnx import _constants

    exporter_max = getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 20)
    try:
        import onnx
    except ImportError:
        return exporter_max
    return min(exporter_max, onnx.defs.onnx_opset_version())


def check_opset(opset: int) -> None:
    if not MIN_OPSET <= opset <= max_opset():
        raise ValueError(
            f"--opset {opset} is not supported; valid: {MIN_OPSET}..{max_opset()} ({MIN_OPSET}: per-channel "
            f"QuantizeLinear for the int8 models; {max_opset()}: the highest both torch {torch.__version__}'s "
            "TorchScript-based ONNX exporter and the installed onnx support)"
        )


def import_onnxruntime() -> Any:
    return optional_import(
        "onnxruntime",
        "ONNX export checks and int8 quantization need onnxruntime",
        "pip install onnxruntime (or the dev extra: pip install -e '.[dev]')",
    )


def import_onnx() -> Any:
    return optional_import("onnx", "ONNX export needs the onnx package", "pip install onnx")


def ort_session(path: str | Path, threads: int | None = None, spinning: bool = True) -> Any:
    """A CPU onnxruntime session with all graph optimisations; `threads` sets intra-op threads.

    `spinning=False` stops idle worker threads from busy-waiting after a run, which would otherwise take the cores
    from whatever runs next in the process (a benchmark interleaving runtimes).
    """
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def dynamic_axes(outputs: Sequence[str], batch: bool, size: bool) -> dict[str, dict[int, str]] | None:
    """The exporter's `dynamic_axes`: the batch of the input and outputs; the input's height and width (the outputs'
    follow from the graph)."""
    axes: dict[str, dict[int, str]] = {INPUT_NAME: {}}
    if batch:
        axes = {name: {0: "batch"} for name in (INPUT_NAME, *outputs)}
    if size:
        axes[INPUT_NAME] |= {2: "height", 3: "width"}
    return axes if any(axes.values()) else None


class OnnxModel(Loaded):
    """An onnxruntime session fed `INPUT_NAME`; `session` is there for onnxruntime's own API."""

    def __init__(self, session: Any) -> None:
        self.session = session

    def run(self, images: Tensor | np.ndarray) -> list[Tensor]:
        return [torch.from_numpy(y) for y in self.session.run(None, {INPUT_NAME: as_array(images)})]


@register_runtime
class OnnxRuntime(Runtime):
    name = "onnx"
    suffix = ".onnx"
    loader = "onnxruntime"
    options = {
        "opset": {
            "type": int,
            "default": DEFAULT_OPSET,
            "help": f"ONNX opset, {MIN_OPSET} up to the highest the installed onnx supports (default %(default)s)",
        }
    }

    def prepare(self, **options: Any) -> dict[str, Any]:
        options = super().prepare(**options)
        check_opset(options["opset"])
        import_onnx()
        import_onnxruntime()
        return options

    def export(
        self,
        model: nn.Module,
        example: Tensor,
        path: Path,
        outputs: Sequence[str],
        dynamic_batch: bool,
        dynamic_size: bool = False,
        opset: int = DEFAULT_OPSET,
    ) -> None:
        """torch.onnx.export with the TorchScript-based exporter (see the module docstring for why)."""
        check_opset(opset)
        import_onnx()
        axes = dynamic_axes(outputs, dynamic_batch, dynamic_size)
        with warnings.catch_warnings():
            # the legacy-exporter notice, and shape checks in Python that the trace records as constants (the
            # check at a second batch size catches any that matter)
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
            warnings.filterwarnings("ignore", message=".*will be removed.*")
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            # the end-to-end detector's NMS loop is scripted where traced (`torch.jit.script_if_tracing`)
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated.*", category=FutureWarning)
            torch.onnx.export(
                model,
                (example,),
                str(path),
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=list(outputs),
                dynamic_axes=axes,
                do_constant_folding=True,
            )

    def write_metadata(self, path: Path, text: str) -> None:
        """`text` as the model's `metadata_props` entry `deploy.metadata.KEY`."""
        onnx = import_onnx()
        model = onnx.load(str(path))
        entries = [entry for entry in model.metadata_props if entry.key != KEY]
        del model.metadata_props[:]
        model.metadata_props.extend([*entries, onnx.StringStringEntryProto(key=KEY, value=text)])
        onnx.save(model, str(path))

    def load(self, path: str | Path, threads: int | None = None, spinning: bool = True) -> OnnxModel:
        """An onnxruntime CPU session (`ort_session`) on the file."""
        return OnnxModel(ort_session(path, threads, spinning))

    def quantize(
        self,
        model: nn.Module,
        fp32_path: str | Path,
        int8_path: str | Path,
        batches: Sequence[np.ndarray],
        float_scopes: Sequence[str] = (),
        **export: Any,
    ) -> Path:
        """QDQ int8 model of `fp32_path` by onnxruntime's `quantize_static` (see `quantize_onnx`); `model` and
        `export` (how the fp32 file was exported) are unused: the quantizer reads the checked file itself."""
        return quantize_onnx(fp32_path, int8_path, batches, float_scopes)


# -- int8 ------------------------------------------------------------------------------------------------------
class BatchReader:
    """onnxruntime's CalibrationDataReader protocol over a list of input batches."""

    def __init__(self, batches: Iterable[np.ndarray], input_name: str = INPUT_NAME) -> None:
        self._feeds = iter([{input_name: as_array(b)} for b in batches])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def quantize_onnx(
    fp32_path: str | Path,
    int8_path: str | Path,
    batches: Sequence[np.ndarray],
    float_scopes: Sequence[str] = (),
) -> Path:
    """QDQ int8 model of `fp32_path` calibrated (MinMax) on `batches`; nodes named under `float_scopes` stay float."""
    onnx = import_onnx()
    import_onnxruntime()
    from onnxruntime.quantization import quant_pre_process

    if not batches:
        raise ValueError("quantization needs at least one calibration batch")
    int8_path = Path(int8_path)
    with tempfile.TemporaryDirectory() as folder:
        # onnxruntime's recommended pre-processing: shape inference, and graph optimisation that turns the
        # exporter's Identity-shared initializers (equal biases) back into constants the quantizer can fold
        prepared = Path(folder) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared))
        graph = onnx.load(str(prepared)).graph
        excluded = [node.name for node in graph.node if node.name.startswith(tuple(float_scopes))]
        fixed_batch = graph.input[0].type.tensor_type.shape.dim[0].dim_value  # 0 when dynamic
        if fixed_batch:  # a fixed-batch model is calibrated on batches of its own size (a remainder is dropped)
            batches = [b[i : i + fixed_batch] for b in batches for i in range(0, len(b) - fixed_batch + 1, fixed_batch)]
        _quantize(prepared, int8_path, batches, excluded)
    return int8_path


def _quantize(prepared: Path, int8_path: Path, batches: Sequence[np.ndarray], excluded: list[str]) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(
        str(prepared),
        str(int8_path),
        BatchReader(batches),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        nodes_to_exclude=excluded,
    )
