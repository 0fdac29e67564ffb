"""OpenVINO IR files (`.xml` beside their `.bin`) run by OpenVINO on the CPU; the metadata is the model's
`rt_info[deploy.metadata.KEY]`.

Inference runs in float32 (`INFERENCE_PRECISION_HINT`): OpenVINO's CPU plugin would otherwise pick bfloat16 on CPUs
with AMX or AVX-512 BF16, and the results would drift from the Python predictors'.
"""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

import numpy as np

from deploy.metadata import KEY
from deploy.run.backend import Backend, register_backend, unreadable
from deploy.run.errors import InputError


@register_backend
class OpenVinoBackend(Backend):
    name = "openvino"
    suffixes = (".xml",)
    package = "openvino"

    def __init__(self, path: Path, threads: int | None) -> None:
        super().__init__(path, threads)
        check_ir(path)
        import openvino as ov

        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": "f32"}
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = str(threads)
        try:
            self.model = core.read_model(str(path))
            self.compiled = core.compile_model(self.model, "CPU", config)
        except RuntimeError as error:
            raise unreadable(path, self.name, error) from error
        self.request = self.compiled.create_infer_request()

    @property
    def metadata_text(self) -> str | None:
        return self.model.get_rt_info([KEY]).astype(str) if self.model.has_rt_info([KEY]) else None

    @property
    def input_shape(self) -> tuple[int | None, ...]:
        shape = self.model.inputs[0].get_partial_shape()
        return tuple(d.get_length() if d.is_static else None for d in shape)

    @property
    def output_names(self) -> list[str]:
        return [output.any_name for output in self.compiled.outputs]

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        results = self.request.infer({0: images})
        # copies: the request reuses its output buffers on the next call
        return {output.any_name: np.array(results[output], copy=True) for output in self.compiled.outputs}


def check_ir(path: Path) -> None:
    """An InputError unless `path` is XML whose root is an IR's `<net>`: OpenVINO would otherwise try every frontend
    it has, each printing its own complaint."""
    try:
        root = next(ElementTree.iterparse(path, events=("start",)))[1].tag
    except (ElementTree.ParseError, StopIteration) as error:
        raise InputError(f"model file {path}: not XML ({error}); pass the .xml of an OpenVINO IR") from error
    if root != "net":
        raise InputError(f"model file {path}: not an OpenVINO IR (its root is <{root}>, not <net>)")
