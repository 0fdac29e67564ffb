"""One registry of models by name, torchvision's shape: `register_model`, `get_model`, `list_models`.

Each task registers its models in `tasks/<task>/spec.py`, one per backbone of `backbones.list_backbones()`, so a
new backbone appears in every task's list without a line changed elsewhere. A name is composed there and only
there; everything else finds it from a task and its architecture arguments (`model_name("detect",
backbone="v3_large")` -> "ssdlite320_v3_large") or reads the arguments back (`model_entry(name).arguments`).
Named weights (`backbones.weights`) are registered under these names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from backbones.weights import find_weights


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its `task`, the `builder` that makes it, the architecture `arguments` its name stands
    for (task hyper-parameters: `{"backbone": "v3_large"}`, `{"head": "lraspp", "backbone": "v2"}`), the class
    count `get_model` builds by default, and the `fit_defaults` its `fit` starts from where the task's own do not
    suit it (flat configuration keys: `{"trainer.max_epochs": 4}`; a flag given on the command line wins)."""

    name: str
    task: str
    builder: Callable[..., nn.Module]
    arguments: Mapping[str, str]
    num_classes: int
    fit_defaults: Mapping[str, Any] = field(default_factory=dict)


_MODELS: dict[str, ModelEntry] = {}


def register_model(
    name: str,
    task: str,
    builder: Callable[..., nn.Module],
    num_classes: int,
    fit_defaults: Mapping[str, Any] | None = None,
    **arguments: str,
) -> ModelEntry:
    """Register `builder(**arguments, num_classes=..., **options)` as `name`, with the `fit` settings it starts from
    (`ModelEntry.fit_defaults`); a name or an architecture of a task registered twice is an error."""
    if name in _MODELS:
        raise ValueError(f"model {name!r} is already registered")
    if any(e.task == task and dict(e.arguments) == arguments for e in _MODELS.values()):
        raise ValueError(f"a {task} model with {arguments} is already registered")
    entry = ModelEntry(name, task, builder, dict(arguments), num_classes, dict(fit_defaults or {}))
    _MODELS[name] = entry
    return entry


def list_models(task: str | None = None) -> list[str]:
    """Every registered model name (of `task` only, when given), sorted."""
    return sorted(name for name, entry in _MODELS.items() if task is None or entry.task == task)


def model_entry(name: str) -> ModelEntry:
    """The registered model `name`; an unknown name lists the valid ones."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {list_models()}")
    return _MODELS[name]


def find_model(task: str, **arguments: Any) -> ModelEntry | None:
    """The `task` model whose architecture arguments are `arguments` (extra keys ignored), or None."""
    for entry in _MODELS.values():
        if entry.task == task and all(arguments.get(key) == value for key, value in entry.arguments.items()):
            return entry
    return None


def model_name(task: str, **arguments: Any) -> str:
    """The registered name of the `task` model with these architecture arguments; ValueError when none is."""
    entry = find_model(task, **arguments)
    if entry is None:
        raise ValueError(f"no {task} model with {arguments} is registered; {task} models: {list_models(task)}")
    return entry.name


def get_model(name: str, **options: Any) -> nn.Module:
    """The model `name`, built with `options` (`num_classes`, `width`, `weights`, ...; see its builder).

    As torchvision's `get_model`: named weights (`weights="coco"`) set the class count to their categories' and
    the architecture options they need (`WeightsEntry.build_options`) unless given; a contradicting option is the
    builder's named error.
    """
    entry = model_entry(name)
    weights = find_weights(name, options.get("weights"))
    defaults: dict[str, Any] = {"num_classes": entry.num_classes}
    if weights is not None:
        defaults |= dict(weights.build_options)
        if weights.categories:
            defaults["num_classes"] = len(weights.categories)
    return entry.builder(**entry.arguments, **(defaults | options))
