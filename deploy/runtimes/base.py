"""The one interface every deployment runtime implements: a name, a file suffix, export, and load-and-run.

A runtime module (`deploy/runtimes/<name>.py`) defines one `Runtime` subclass and registers it with
`@register_runtime`; `deploy.runtimes` imports every module of the package, so a new runtime is one new file. A
runtime module imports its runtime's own package (onnx, openvino, ...) inside functions only: every runtime module
is imported whenever any runtime is looked up, and one not installed must not stop the others.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

# the name of the exported model's one input (float32 images [N, 3, S, S]), in every runtime
INPUT_NAME = "images"


class Loaded(ABC):
    """An exported file opened by its runtime; `run(images)` gives the outputs in export order, as CPU tensors."""

    @abstractmethod
    def run(self, images: Tensor | np.ndarray) -> list[Tensor]:
        """The outputs for a float32 batch [N, 3, S, S] (a tensor or an array)."""

    def __call__(self, images: Tensor | np.ndarray) -> list[Tensor]:
        return self.run(images)


class Runtime(ABC):
    """One deployment format: how a network becomes a file, and how that file is run again to check it.

    `options` lists the runtime's own export options as argparse keyword arguments (with a `default`); the
    `export` CLI offers each as `--<name>`, and `prepare` fills in the defaults.
    """

    name: ClassVar[str]
    suffix: ClassVar[str]  # of the default file name, next to the checkpoint: last.ckpt -> last<suffix>
    loader: ClassVar[str]  # what `load` runs the file with, as export summaries name it
    options: ClassVar[dict[str, dict[str, Any]]] = {}

    def prepare(self, **options: Any) -> dict[str, Any]:
        """`options` with the defaults filled in, checked before any work; unknown names raise a ValueError.

        A runtime overrides this to also reject unsupported values or a missing package (ImportError).
        """
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ValueError(
                f"runtime {self.name!r} has no option(s) {unknown}; its options: {sorted(self.options) or 'none'}"
            )
        return {name: options.get(name, spec["default"]) for name, spec in self.options.items()}

    @abstractmethod
    def export(
        self, model: nn.Module, example: Tensor, path: Path, outputs: Sequence[str], dynamic_batch: bool, **options: Any
    ) -> None:
        """Write `model`, traced on `example`, to `path`: input `INPUT_NAME`, outputs named `outputs`; with
        `dynamic_batch`, a batch size chosen at run time. `options` are `prepare`'s."""

    @abstractmethod
    def load(self, path: str | Path) -> Loaded:
        """The file at `path`, ready to run on CPU."""


def output_list(outputs: Tensor | Sequence[Tensor]) -> list[Tensor]:
    """A model's output (one tensor or a tuple of them) as a list."""
    return [outputs] if isinstance(outputs, Tensor) else list(outputs)


def as_tensor(images: Tensor | np.ndarray) -> Tensor:
    return images if isinstance(images, Tensor) else torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))


def as_array(images: Tensor | np.ndarray) -> np.ndarray:
    array = images.detach().cpu().numpy() if isinstance(images, Tensor) else images
    return np.ascontiguousarray(array, dtype=np.float32)


_REGISTRY: dict[str, Runtime] = {}


def register_runtime(cls: type[Runtime]) -> type[Runtime]:
    """Class decorator: register one instance of `cls` under `cls.name`."""
    if cls.name in _REGISTRY:
        raise ValueError(f"runtime {cls.name!r} is already registered (by {type(_REGISTRY[cls.name]).__module__})")
    _REGISTRY[cls.name] = cls()
    return cls


def list_runtimes() -> list[str]:
    """Names accepted by `get_runtime` and by `export --format`."""
    return sorted(_REGISTRY)


def get_runtime(name: str, argument: str = "runtime") -> Runtime:
    """The registered runtime `name`; an unknown name raises a ValueError listing the valid ones."""
    if name not in _REGISTRY:
        raise ValueError(f"{argument} {name!r} is not supported; valid: {list_runtimes()}")
    return _REGISTRY[name]


def optional_import(module: str, needed: str, install: str) -> Any:
    """`module`, imported where it is used (a runtime that is not installed must not break the others), or an
    ImportError that reads "<needed>, which is not installed: <install>"."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"{needed}, which is not installed: {install}") from error
