"""The one interface every deployment runtime implements: a name, a file suffix, export, and load-and-run.

A runtime module (`deploy/runtimes/<name>.py`) defines one `Runtime` subclass and registers it with
`@register_runtime`; `deploy.runtimes` imports every module of the package, so a new runtime is one new file. A
runtime module imports its runtime's own package (onnx, openvino, ...) inside functions only: every runtime module
is imported whenever any runtime is looked up, and one not installed must not stop the others.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from deploy.metadata import sidecar_path

# the name of the exported model's one input (images [N, 3, S, S]: float32, or uint8 for end-to-end files), in every
# runtime
INPUT_NAME = "images"


class Loaded(ABC):
    """An exported file opened by its runtime; `run(images)` gives the outputs in export order, as CPU tensors."""

    @abstractmethod
    def run(self, images: Tensor | np.ndarray) -> list[Tensor]:
        """The outputs for a batch [N, 3, S, S] (a tensor or an array; uint8 stays uint8, anything else is float32)."""

    def __call__(self, images: Tensor | np.ndarray) -> list[Tensor]:
        return self.run(images)


class FixedBatch(Loaded):
    """A fixed-batch export run on any batch: cut into pieces of its batch size, the last padded by repeating its
    last image, the outputs of the padding dropped."""

    def __init__(self, loaded: Loaded, batch_size: int) -> None:
        self.loaded, self.batch_size = loaded, batch_size

    def run(self, images: Tensor | np.ndarray) -> list[Tensor]:
        images = as_tensor(images)
        count, pad = len(images), -len(images) % self.batch_size
        if pad:
            images = torch.cat([images, images[-1:].expand(pad, *images.shape[1:])])
        pieces = [self.loaded.run(piece) for piece in torch.split(images, self.batch_size)]
        return [torch.cat(outputs)[:count] for outputs in zip(*pieces, strict=True)]


class Runtime(ABC):
    """One deployment format: how a network becomes a file, and how that file is run again to check it.

    `options` lists the runtime's own export options as argparse keyword arguments (with a `default`); the
    `export` CLI offers each as `--<name>`, and `prepare` fills in the defaults.
    """

    name: ClassVar[str]
    suffix: ClassVar[str]  # of the default file name, next to the checkpoint: last.ckpt -> last<suffix>
    loader: ClassVar[str]  # what `load` runs the file with, as export summaries name it
    options: ClassVar[dict[str, dict[str, Any]]] = {}
    nms: ClassVar[bool] = True  # whether its files can hold non-maximum suppression (ONNX's NonMaxSuppression)
    any_size: ClassVar[bool] = True  # whether its files can take any input height and width (`dynamic_size`)

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
        self,
        model: nn.Module,
        example: Tensor,
        path: Path,
        outputs: Sequence[str],
        dynamic_batch: bool,
        dynamic_size: bool = False,
        **options: Any,
    ) -> None:
        """Write `model`, traced on `example`, to `path`: input `INPUT_NAME`, outputs named `outputs`; with
        `dynamic_batch`, a batch size chosen at run time; with `dynamic_size` (where `any_size`), any input height
        and width. `options` are `prepare`'s."""

    def write_metadata(self, path: Path, text: str) -> None:
        """Store `text` (`deploy.metadata.encode`) with the file at `path`: in a JSON file beside it, unless the
        format has metadata of its own (ONNX, OpenVINO)."""
        sidecar_path(path).write_text(text + "\n")

    @abstractmethod
    def load(self, path: str | Path) -> Loaded:
        """The file at `path`, ready to run on CPU."""


def output_list(outputs: Tensor | Sequence[Tensor]) -> list[Tensor]:
    """A model's output (one tensor or a tuple of them) as a list."""
    return [outputs] if isinstance(outputs, Tensor) else list(outputs)


def as_tensor(images: Tensor | np.ndarray) -> Tensor:
    return images if isinstance(images, Tensor) else torch.from_numpy(as_array(images))


def as_array(images: Tensor | np.ndarray) -> np.ndarray:
    """`images` as a contiguous array: uint8 pixels stay uint8 (end-to-end files), anything else becomes float32."""
    array = images.detach().cpu().numpy() if isinstance(images, Tensor) else np.asarray(images)
    return np.ascontiguousarray(array, dtype=np.uint8 if array.dtype == np.uint8 else np.float32)


def batch_example(example: Tensor) -> Tensor:
    """The batch a dynamic-batch export is traced on: 2 images (the first one repeated if `example` has one).

    `torch.export` specialises a dimension of size 1, and the size seen decides the range a program keeps when a
    later pass guards on it (see `deploy.runtimes.executorch.exported_program`), so it is always 2.
    """
    return example[:1].expand(2, *example.shape[1:]).contiguous() if len(example) < 2 else example[:2]


def contiguous_parameters(model: nn.Module) -> nn.Module:
    """`model`, or a copy whose parameters and buffers have plain NCHW (contiguous) strides.

    `is_contiguous()` cannot tell: a depthwise weight [C, 1, k, k] kept channels-last by the backbone has strides
    (k*k, 1, k, 1), which count as contiguous, yet the convolution it feeds follows the weight's layout and gives a
    channels-last output. The strides are compared with the contiguous ones instead.
    """

    def plain(tensor: Tensor) -> bool:
        return tensor.stride() == torch.empty(tensor.shape, device="meta").stride()

    if all(plain(t) for t in (*model.parameters(), *model.buffers())):
        return model
    model = copy.deepcopy(model)
    with torch.no_grad():
        for tensor in (*model.parameters(), *model.buffers()):
            tensor.data = tensor.data.clone(memory_format=torch.contiguous_format)
    return model


def nchw_module(model: nn.Module, example: Tensor, dynamic_shapes: Any = None) -> nn.Module:
    """`model` as a module that computes the same in plain NCHW layout, for the converters that `torch.export` it
    (ExecuTorch, LiteRT): its parameters contiguous, and its graph (exported on `example`) with every explicit
    channels-last conversion (`memory_format=torch.channels_last`: the backbone's `x.contiguous(...)` of its input)
    made a contiguous one.

    The models are channels-last for eager speed. Exported as they are, every squeeze-excitation's
    `adaptive_avg_pool2d` on a channels-last map becomes `mean` plus an `as_strided_copy` that restores the
    channels-last strides of its [N, C, 1, 1] output: XNNPACK takes no such op and cuts the program there. A memory
    format is a layout, not an operation: the values do not change, and the backends choose their own layout.
    """
    model = contiguous_parameters(model)
    module = torch.export.export(model, (example,), dynamic_shapes=dynamic_shapes, strict=False).module()
    nodes = [node for node in module.graph.nodes if node.kwargs.get("memory_format") == torch.channels_last]
    if not nodes:
        return model
    for node in nodes:
        node.kwargs = {**node.kwargs, "memory_format": torch.contiguous_format}
    module.recompile()
    return module


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
    ImportError that reads "<needed>, which is not installed: <install>" (or, for an installed package whose import
    fails, names that failure)."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        if importlib.util.find_spec(module.split(".")[0]) is not None:
            raise ImportError(f"{needed}: {module} is installed but its import fails ({error})") from error
        raise ImportError(f"{needed}, which is not installed: {install}") from error
