"""Dataset formats registered by name: `DataFormat`, the per-task `FormatRegistry`, and the error for missing data.

A task's dataset formats live in its `data/formats/` package, one module per format, each registering a
`DataFormat` by name in the package's `FormatRegistry` (as detectron2's `DatasetCatalog` and mmengine's registries):
how to build a split, how to read the class names, which arguments only it reads, and for a generated (synthetic)
format how to write its dataset. The data module (tasks/common/datamodule.py) looks the format up; it never
branches on the format's name.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from torch.utils.data import Dataset


class DatasetNotFoundError(FileNotFoundError):
    """The data the arguments point at is not there (no such root, file, or known layout). Its message says what
    was found and what to pass; the command line prints it as one `error: ...` line (tasks/common/cli.py)."""


@dataclass(frozen=True, kw_only=True)
class DataFormat:
    """One dataset format of a task, registered by `name` (the data module's `format` value).

    `build(data, split, transform, train)` returns the split's dataset; `data` is the data module, whose
    arguments, `data_root`, `class_names` and `skip_bad_samples` it reads. `class_names(data)` is label -> name,
    read before setup (a category list or folder names, never images). `generate(data)`, for a generated format,
    writes its dataset once (cached) and returns the folder: such a format takes no root and has the splits
    "train" and "val" only. `options` are the data module arguments only this format reads; another format given
    one of them is an error naming it. `root_alternatives` are those of its options that locate the data without
    `root` (e.g. annotation files): given one of them, root may be None.
    """

    name: str
    build: Callable[[Any, str, Any, bool], Dataset]
    class_names: Callable[[Any], list[str]]
    generate: Callable[[Any], Path] | None = None
    options: tuple[str, ...] = ()
    root_alternatives: tuple[str, ...] = ()


F = TypeVar("F", bound=DataFormat)


def fixed_class_names(names: Sequence[str]) -> Callable[[Any], list[str]]:
    """A format's `class_names` where they are known without reading the data."""
    fixed = list(names)
    return lambda data: list(fixed)


def synthetic_format(
    read_as: F,
    ensure: Callable[[str | None, int, int, int], Path],
    class_names: Sequence[str] | None = None,
    name: str = "synthetic",
) -> F:
    """A generated format: `ensure(cache_dir, num_train, num_val, image_size)` writes the dataset once (sized by
    the data module's `cache_dir` and `synthetic_*` arguments) in the layout of `read_as`, which then reads it;
    `class_names` fixed names (None: read as `read_as` does). It has none of `read_as`'s format-only options."""

    def generate(data: Any) -> Path:
        return ensure(data.cache_dir, data.synthetic_train_images, data.synthetic_val_images, data.synthetic_image_size)

    names = read_as.class_names if class_names is None else fixed_class_names(class_names)
    return dataclasses.replace(
        read_as, name=name, class_names=names, generate=generate, options=(), root_alternatives=()
    )


class FormatRegistry(Generic[F]):
    """The dataset formats of one task by name.

    The modules of `package` (the task's `data/formats/` folder) register their formats when imported, and the
    registry imports them all on its first lookup, so a new format is one new file in that folder.
    """

    def __init__(self, task: str, package: str) -> None:
        self.task = task
        self.package = package
        self._formats: dict[str, F] = {}
        self._discovered = False

    def register(self, data_format: F) -> F:
        """Add `data_format` under its name (once); returns it, so a module can keep it."""
        if data_format.name in self._formats:
            raise ValueError(f"{self.task} format {data_format.name!r} is registered twice")
        self._formats[data_format.name] = data_format
        return data_format

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        for module in pkgutil.iter_modules(importlib.import_module(self.package).__path__):
            importlib.import_module(f"{self.package}.{module.name}")

    def names(self) -> tuple[str, ...]:
        """The registered format names, sorted."""
        self._discover()
        return tuple(sorted(self._formats))

    def literal(self) -> Any:
        """`Literal[<the names>]`: the type of the data module's `format` argument (checked by the CLI)."""
        return Literal[self.names()]

    def get(self, name: str) -> F:
        """The format registered as `name`; ValueError listing the registered names otherwise."""
        self._discover()
        if name not in self._formats:
            raise ValueError(
                f"format={name!r} is not a registered {self.task} format; valid formats: {list(self.names())}"
            )
        return self._formats[name]

    def options(self) -> dict[str, list[str]]:
        """Format-only argument -> the names of the formats that read it."""
        owners: dict[str, list[str]] = {}
        for name in self.names():
            for option in self._formats[name].options:
                owners.setdefault(option, []).append(name)
        return owners
