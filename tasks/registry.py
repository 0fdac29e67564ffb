"""One registry of tasks by name: each task package declares one `TaskSpec` in `tasks/<task>/spec.py` and registers
it (`register_task`), as runtimes and data formats register themselves. Whatever works on "a task" (loading a
checkpoint, the predictors, `export`, int8) looks its classes and export facts up here by the task's name, which
every checkpoint records."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn


@dataclass(frozen=True)
class TaskSpec:
    """A task's classes and what its exported network is.

    `outputs` names the exported network's outputs; `input_size` is the hyper-parameter that holds its input side
    (classify: "resolution", detect: "image_size") or a fixed side (segment: 520); `exportable(network, size)` is
    the module exported from the trained network; `float_scopes` are the exported node scopes int8 keeps in float;
    `evaluate_exported(models, datamodule, checkpoint, size)` scores loaded exported files on the val split
    (fp32 against int8). `end_to_end(checkpoint, size, nms, **options)` is the end-to-end file's module, outputs and
    metadata (`tasks.common.end_to_end.EndToEnd`), `end_to_end_options` its `export` options (argparse keywords).
    """

    name: str
    module: type
    datamodule: type
    predictor: type
    cli: type
    outputs: tuple[str, ...]
    input_size: str | int
    exportable: Callable[[nn.Module, int], nn.Module]
    evaluate_exported: Callable[[Mapping[str, Any], Any, Any, int], dict[str, float]]
    end_to_end: Callable[..., Any]
    float_scopes: tuple[str, ...] = ()
    end_to_end_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


_TASKS: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec) -> TaskSpec:
    if spec.name in _TASKS:
        raise ValueError(f"task {spec.name!r} is already registered")
    _TASKS[spec.name] = spec
    return spec


def list_tasks() -> list[str]:
    return sorted(_TASKS)


def get_task(name: str) -> TaskSpec:
    """The registered task `name`; an unknown name lists the valid ones."""
    if name not in _TASKS:
        raise ValueError(f"unknown task {name!r}; valid: {list_tasks()}")
    return _TASKS[name]
