"""ONNX files (`.onnx`) run by onnxruntime on the CPU; the metadata is the model's `metadata_props` entry."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deploy.metadata import KEY
from deploy.run.backend import Backend, register_backend, unreadable


@register_backend
class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    suffixes = (".onnx",)
    package = "onnxruntime"

    def __init__(self, path: Path, threads: int | None) -> None:
        super().__init__(path, threads)
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime's errors (Fail, InvalidProtobuf, ...) share no base but Exception
            raise unreadable(path, self.name, error) from error
        self.input = self.session.get_inputs()[0]

    @property
    def metadata_text(self) -> str | None:
        return self.session.get_modelmeta().custom_metadata_map.get(KEY)

    @property
    def input_shape(self) -> tuple[int | None, ...]:
        return tuple(d if isinstance(d, int) else None for d in self.input.shape)

    @property
    def output_names(self) -> list[str]:
        return [output.name for output in self.session.get_outputs()]

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self.session.run(None, {self.input.name: images})
        return dict(zip(self.output_names, outputs, strict=True))
