"""OpenVINO IR (`.openvino.xml` + `.openvino.bin`), converted by `openvino.convert_model` from the ONNX export, run
by OpenVINO's CPU plugin; int8 by NNCF post-training quantization.

The IR is converted from the ONNX file that `deploy.runtimes.onnx` writes (TorchScript-based exporter), not from
the PyTorch module: that takes about 2 s where OpenVINO's PyTorch frontend takes 5-8 (v3_small, 2 CPU threads),
keeps the input and output names and the dynamic batch axis, and keeps the exporter's module-scope node names, so
that int8 leaves the scopes it is given (the detector's decoding, `/decode/...`) in float exactly as the onnx
runtime's `quantize` does. Weights stay float32 in the file (`compress_to_fp16=False`), and the CPU plugin is told
to infer in f32: on CPUs with bf16 units (AMX, AVX512-BF16) its default precision is bf16, a 1e-2 difference, not
1e-4.

int8: `nncf.quantize` on the IR with the MIXED preset (symmetric weights, asymmetric activations): V3's hard-swish
outputs reach -0.375, so a symmetric activation grid (PERFORMANCE) would spend half its levels below zero after
every hard-swish; the ReLU6 networks lose nothing by it.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from deploy.metadata import KEY
from deploy.runtimes.base import Loaded, Runtime, as_array, optional_import, register_runtime
from deploy.runtimes.onnx import DEFAULT_OPSET, OnnxRuntime

INSTALL = "pip install -e '.[openvino]' (openvino, nncf and onnx)"
DEVICE = "CPU"


def import_openvino() -> Any:
    return optional_import("openvino", "--format openvino needs the openvino package", INSTALL)


def import_nncf() -> Any:
    return optional_import("nncf", "OpenVINO int8 needs the nncf package", INSTALL)


def compile_model(path: str | Path, threads: int | None = None) -> Any:
    """The IR at `path` compiled for OpenVINO's CPU plugin: f32 inference, latency hint, `threads` threads."""
    openvino = import_openvino()
    path = Path(path)
    if not path.is_file() or not path.with_suffix(".bin").is_file():
        raise FileNotFoundError(f"{path}: an OpenVINO IR needs both {path.name} and {path.with_suffix('.bin').name}")
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = threads
    return openvino.Core().compile_model(str(path), DEVICE, config)


class OpenVinoModel(Loaded):
    """A compiled OpenVINO model; `compiled` is there for OpenVINO's own API (infer requests, properties)."""

    def __init__(self, compiled: Any) -> None:
        self.compiled = compiled
        self.request = compiled.create_infer_request()

    def run(self, images: Tensor | np.ndarray) -> list[Tensor]:
        self.request.infer([as_array(images)])
        return [torch.from_numpy(self.request.get_output_tensor(i).data.copy()) for i in range(len(self.outputs))]

    @property
    def outputs(self) -> list[Any]:
        return self.compiled.outputs


@register_runtime
class OpenVinoRuntime(Runtime):
    name = "openvino"
    suffix = ".openvino.xml"
    loader = "openvino CPU, f32"

    def prepare(self, **options: Any) -> dict[str, Any]:
        options = super().prepare(**options)
        import_openvino()
        OnnxRuntime().prepare()  # the IR is converted from the ONNX export: onnx must be there too
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
        """ONNX export (opset `DEFAULT_OPSET`) to a temporary file, `openvino.convert_model`, `save_model` at
        `path` (its `.bin` beside it)."""
        openvino = import_openvino()
        with tempfile.TemporaryDirectory() as folder:
            onnx_path = Path(folder) / "model.onnx"
            OnnxRuntime().export(model, example, onnx_path, outputs, dynamic_batch, dynamic_size, opset=DEFAULT_OPSET)
            converted = openvino.convert_model(str(onnx_path))
        openvino.save_model(converted, str(path), compress_to_fp16=False)

    def write_metadata(self, path: Path, text: str) -> None:
        """`text` as the IR's `rt_info` entry `deploy.metadata.KEY`. The IR is read and saved again, through a
        temporary folder: the model read maps its `.bin`, which must not be overwritten while it is."""
        openvino = import_openvino()
        with tempfile.TemporaryDirectory(dir=path.parent) as folder:
            model = openvino.Core().read_model(str(path))
            model.set_rt_info(text, [KEY])
            written = Path(folder) / path.name
            openvino.save_model(model, str(written), compress_to_fp16=False)
            del model
            written.with_suffix(".bin").replace(path.with_suffix(".bin"))
            written.replace(path)

    def load(self, path: str | Path, threads: int | None = None) -> OpenVinoModel:
        return OpenVinoModel(compile_model(path, threads))

    def quantize(
        self,
        model: nn.Module,
        fp32_path: str | Path,
        int8_path: str | Path,
        batches: Sequence[np.ndarray],
        float_scopes: Sequence[str] = (),
        **export: Any,
    ) -> Path:
        """int8 IR of `fp32_path` by `nncf.quantize` (MIXED preset, see the module docstring) calibrated on
        `batches` (cut to the IR's batch size when that is fixed); nodes named under `float_scopes` stay float.
        `model` and `export` (how the fp32 file was exported) are unused: NNCF quantizes the IR itself."""
        openvino = import_openvino()
        nncf = import_nncf()
        if not batches:
            raise ValueError("quantization needs at least one calibration batch")
        ir = openvino.Core().read_model(str(fp32_path))
        batch = ir.inputs[0].get_partial_shape()[0]
        if batch.is_static:  # a fixed-batch IR is calibrated on batches of its own size (a remainder is dropped)
            size = batch.get_length()
            batches = [b[i : i + size] for b in batches for i in range(0, len(b) - size + 1, size)]
        ignored = nncf.IgnoredScope(patterns=[f".*{re.escape(scope)}.*" for scope in float_scopes], validate=False)
        quantized = nncf.quantize(
            ir,
            nncf.Dataset([as_array(b) for b in batches]),
            preset=nncf.QuantizationPreset.MIXED,
            subset_size=len(batches),
            ignored_scope=ignored,
        )
        int8_path = Path(int8_path)
        openvino.save_model(quantized, str(int8_path), compress_to_fp16=False)
        return int8_path
