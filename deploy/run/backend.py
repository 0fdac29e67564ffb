"""The one small interface every runtime backend implements, and the registry that picks one by file suffix.

A backend module (`deploy/run/<runtime>_backend.py`) defines one `Backend` subclass registered with
`@register_backend`; `open_backend` imports every such module of this package, so a new runtime is one new file.
Backend modules import their runtime's package inside functions only: an uninstalled runtime must not stop the
others, and loading an ONNX file must not import OpenVINO.
"""

from __future__ import annotations

import importlib
import pkgutil
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np

from deploy.run.errors import InputError

BACKENDS: dict[str, type[Backend]] = {}  # by file suffix


class Backend(ABC):
    """An exported file opened by its runtime: its embedded metadata, its input, and `run` (uint8 NCHW in, outputs
    by name out)."""

    name: ClassVar[str]  # the runtime, as summaries name it
    suffixes: ClassVar[tuple[str, ...]]  # the model files it opens
    package: ClassVar[str]  # what `pip install` needs for it

    def __init__(self, path: Path, threads: int | None) -> None:
        self.path = path
        self.threads = threads

    @property
    @abstractmethod
    def metadata_text(self) -> str | None:
        """The file's own metadata text (under `deploy.metadata.KEY`), or None where it has none."""

    @property
    @abstractmethod
    def input_shape(self) -> tuple[int | None, ...]:
        """The input's shape, None for a dynamic dimension."""

    @property
    @abstractmethod
    def output_names(self) -> list[str]:
        """The outputs' names."""

    @abstractmethod
    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """The outputs, by name, for a uint8 RGB batch [N, 3, H, W]."""


def register_backend(cls: type[Backend]) -> type[Backend]:
    for suffix in cls.suffixes:
        BACKENDS[suffix] = cls
    return cls


def import_backends() -> None:
    """Import every `*_backend` module of this package, which registers its backend."""
    package = __name__.rpartition(".")[0]
    for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if module.name.endswith("_backend"):
            importlib.import_module(f"{package}.{module.name}")


def open_backend(path: str | Path, threads: int | None = None) -> Backend:
    """The model file `path` opened by the backend of its suffix; an InputError naming it where it cannot be."""
    path = Path(path)
    import_backends()
    if not path.is_file():
        raise InputError(
            f"model file {path}: no such file; export one with `python -m tasks.<task> export --ckpt_path CKPT "
            "--format onnx` (or openvino)"
        )
    cls = BACKENDS.get(path.suffix.lower())
    if cls is None:
        raise InputError(
            f"model file {path}: the runner opens {', '.join(sorted(BACKENDS))} files, not {path.suffix!r}"
        )
    try:
        return cls(path, threads)
    except ImportError as error:
        raise InputError(
            f"model file {path}: {cls.name} is not installed ({error}): pip install {cls.package}"
        ) from error


def unreadable(path: Path, runtime: str, error: Exception) -> InputError:
    """The error for a file its runtime cannot read. OpenVINO's messages run over lines, source locations first and
    the reason last: the last line that is not a location."""
    locations = ("Exception from", "Check '")
    lines = [line.strip() for line in str(error).splitlines() if line.strip() and not line.startswith(locations)]
    reason = lines[-1] if lines else type(error).__name__
    return InputError(
        f"model file {path}: {runtime} cannot read it ({reason}); pass a complete file written by "
        "`python -m tasks.<task> export`"
    )
