"""`load(path)`: an exported model file and its metadata, run on raw images without torch.

    model = load("ssdlite.onnx")        # or an OpenVINO "model.xml"
    results = model(["a.jpg", "photos/", rgb_array])  # as the task's Python predictor returns them, in numpy

Images go through the preprocessing the metadata names (`preprocess.py`), are batched as the predictors batch them
(`batch_size` inputs at a time, only inputs of one network-input shape together, so an image's result never depends
on its neighbours; a fixed-batch file gets exactly its batch, the last padded by repeating its last image), and the
outputs become per-image results (`results.py`). Results of path inputs carry their `path`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deploy.metadata import decode, read_sidecar
from deploy.run.backend import Backend, open_backend
from deploy.run.contract import Contract, read_contract
from deploy.run.errors import InputError
from deploy.run.images import ImageInput, expand_inputs, rgb_array
from deploy.run.preprocess import prepare
from deploy.run.results import RESULTS

DEFAULT_BATCH_SIZE = 8


class Model:
    """An exported file opened by its runtime, with its contract: `model(images)` -> one result per image."""

    def __init__(self, backend: Backend, contract: Contract) -> None:
        self.backend = backend
        self.contract = contract
        self.path = backend.path
        self.check_outputs()

    @property
    def task(self) -> str:
        return self.contract.task

    @property
    def class_names(self) -> list[str]:
        return self.contract.class_names

    def check_outputs(self) -> None:
        """An InputError where the file lacks an output its task reads or its input does not fit the metadata."""
        missing = [name for name in self.contract.outputs if name not in self.backend.output_names]
        if missing:
            raise InputError(
                f"model file {self.path}: its outputs {self.backend.output_names} lack {missing}, which a "
                f"{self.task} model's metadata promises; re-export it with `python -m tasks.{self.task} export`"
            )
        shape = self.backend.input_shape
        want = (self.contract.batch, 3, *(self.contract.size or (None, None)))
        if len(shape) != 4 or any(
            have is not None and have != expected for have, expected in zip(shape, want, strict=True)
        ):
            raise InputError(
                f"model file {self.path}: its input has shape {list(shape)} where its metadata says {list(want)} "
                "(None: any); re-export it"
            )

    def __call__(
        self, images: ImageInput | Iterable[ImageInput], batch_size: int = DEFAULT_BATCH_SIZE
    ) -> list[dict[str, Any]]:
        """One result per image (a folder counts as its images, in name order), in input order; results of path
        inputs carry their `path`."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        inputs = expand_inputs(images)
        results: list[dict[str, Any]] = []
        for start in range(0, len(inputs), batch_size):
            chunk = inputs[start : start + batch_size]
            arrays = [rgb_array(item, f"images[{start + i}]") for i, item in enumerate(chunk)]
            for item, result in zip(chunk, self.predict_arrays(arrays), strict=True):
                results.append({**result, "path": str(item)} if isinstance(item, str | Path) else result)
        return results

    def predict_arrays(self, arrays: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        """Results for uint8 RGB arrays [H, W, 3], in as few runs as their network-input shapes allow."""
        prepared = [prepare(array, self.contract) for array in arrays]
        groups: dict[tuple[int, ...], list[int]] = {}
        for index, (pixels, _) in enumerate(prepared):
            groups.setdefault(pixels.shape, []).append(index)
        results: list[dict[str, Any] | None] = [None] * len(arrays)
        for indices in groups.values():
            batch = np.stack([prepared[i][0] for i in indices]).transpose(0, 3, 1, 2)
            outputs = self.run(np.ascontiguousarray(batch))
            found = RESULTS[self.task](outputs, [prepared[i][1] for i in indices], self.contract)
            for index, result in zip(indices, found, strict=True):
                results[index] = result
        return [result for result in results if result is not None]

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """The file's outputs for a uint8 batch [N, 3, H, W]; a fixed-batch file runs it in pieces of its batch size,
        the last padded by repeating its last image, the padding's outputs dropped."""
        size = self.contract.batch
        if size is None:
            return self.backend.run(batch)
        count, pad = len(batch), -len(batch) % size
        if pad:
            batch = np.concatenate([batch, np.repeat(batch[-1:], pad, axis=0)])
        pieces = [self.backend.run(batch[start : start + size]) for start in range(0, len(batch), size)]
        return {name: np.concatenate([piece[name] for piece in pieces])[:count] for name in pieces[0]}


def load(path: str | Path, threads: int | None = None) -> Model:
    """The model file `path` (`.onnx`: onnxruntime; `.xml`: OpenVINO), its metadata embedded or in `<path>.json`;
    `threads`: the runtime's threads (its default where None). InputError / MetadataError name the file."""
    backend = open_backend(path, threads)
    text = backend.metadata_text
    metadata = decode(text, backend.path) if text is not None else read_sidecar(backend.path)
    return Model(backend, read_contract(metadata, backend.path))
