"""The settings a task's CLI takes from a checkpoint (`validate`/`test`/`predict --ckpt_path`), from the model's own
`fit` defaults (`tasks.models.ModelEntry.fit_defaults`) and from named weights (`--model.weights`,
`--model.backbone_weights`), computed by one pure function (`cli_settings`) from plain mappings
of flat dotted keys ("model.backbone", "data.image_size", "backbone"): no I/O, no Lightning objects.

A setting is explicit when its flag is on the command line (`given_flags`) or when the configuration holds a value
other than the parser's default (a config file's). Explicit settings win; an explicit architecture flag that
contradicts the checkpoint is a ValueError; an explicit setting that contradicts named weights is kept with a
warning."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from backbones.weights import WeightsEntry, find_weights
from tasks.common.named_weights import architecture_fields
from tasks.common.task_checkpoint import WEIGHT_KEYS
from tasks.models import ModelEntry, find_model

# the subcommands that take the model's and the data's settings from `--ckpt_path` (`fit --ckpt_path` resumes, with
# Lightning's own merge of the checkpoint's hyper-parameters)
CHECKPOINT_SUBCOMMANDS = ("validate", "test", "predict")
# model hyper-parameters that come through the data (linked at instantiation), never from the checkpoint directly
DATA_LINKED = ("num_classes", "class_names", "_instantiator")


def _no_weights_settings(entry: WeightsEntry) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class TaskShape:
    """What `cli_settings` needs to know of a task's CLI (`TaskCLI.shape`)."""

    task: str  # the registry's task name ("detect"), whose models named weights belong to
    architecture: tuple[str, ...]  # hyper-parameters that must equal the checkpoint's (`TaskModule.architecture`)
    top_level: tuple[str, ...] = ("backbone", "width")  # top-level flags linked to `model.<name>`
    links: tuple[tuple[str, str], ...] = ()  # other parse-time links (source, target)
    data_locators: tuple[str, ...] = ("data.format", "data.root")  # the keys that name another dataset
    # config values that named weights of the task's model bring beyond the preprocessing (`TaskCLI.weights_settings`)
    weights_settings: Callable[[WeightsEntry], Mapping[str, Any]] = _no_weights_settings


@dataclass(frozen=True)
class Settings:
    """Key -> value updates to apply to the parsed configuration, in order, and the warnings to log."""

    updates: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # lines for the user that ask nothing of them


def given_flags(args: Iterable[Any]) -> frozenset[str]:
    """The keys of the flags on a command line: "model.weights" for `--model.weights coco` and `--model.weights=coco`.
    Only the keys: the parsed configuration already holds their values, typed by the parser."""
    return frozenset(a[2:].split("=", 1)[0] for a in args if isinstance(a, str) and a.startswith("--") and a != "--")


def checkpoint_path(subcommand: str | None, config: Mapping[str, Any]) -> str | None:
    """The `--ckpt_path` that `cli_settings` takes settings from (None for `fit`, which resumes)."""
    path = config.get("ckpt_path")
    return str(path) if subcommand in CHECKPOINT_SUBCOMMANDS and path else None


def cli_settings(
    subcommand: str | None,
    config: Mapping[str, Any],
    defaults: Mapping[str, Any],
    given: Collection[str],
    checkpoint: Mapping[str, Any] | None,
    shape: TaskShape,
) -> Settings:
    """The settings to apply to `config` (the subcommand's configuration as parsed, flat dotted keys) before the
    classes are built.

    With `checkpoint` (the loaded `--ckpt_path` file of `validate`/`test`/`predict`; ignored for other subcommands):
    its model hyper-parameters fill every `model.*` key (and the top-level flag linked to it) not set explicitly; an
    explicit architecture flag that differs is a ValueError naming both; `model.weights`/`backbone_weights` are
    unset unless explicit (the state dict is the weights); its data hyper-parameters fill the `data.*` keys not set
    explicitly, unless the command names another dataset (`shape.data_locators`).

    `fit` of a registered model with its own `fit_defaults` (`tasks.models.ModelEntry`) takes them for every key not
    set explicitly, with a note naming them.

    Then named weights (`model.weights` of the task's model, else `model.backbone_weights` of the backbone) bring
    their preprocessing, the data's mean/std/interpolation and `shape.weights_settings(entry)`, to every such key
    that is not explicit (nor set by the checkpoint); an explicit value that differs is kept, with a warning.
    `predict` with model weights alone names the classes by the weights' categories.
    """
    updates: dict[str, Any] = {}
    current = dict(config)

    def put(key: str, value: Any) -> None:
        updates[key] = current[key] = value

    if checkpoint is not None and checkpoint_path(subcommand, config):
        for key, value in _from_checkpoint(config, defaults, given, checkpoint, shape).items():
            put(key, value)
    explicit = _explicit(current, defaults, given)  # judged on the values as they now are, the checkpoint's too
    notes = []
    if subcommand == "fit":
        model = _registered_model(shape.task, current)
        chosen = {k: v for k, v in (model.fit_defaults if model else {}).items() if k in current and not explicit(k)}
        for key, value in chosen.items():
            put(key, value)
        if chosen:
            flags = ", ".join(f"--{key} {value}" for key, value in chosen.items())
            notes.append(f"{model.name} trains with its own defaults: {flags} (a flag given on the command line wins)")
    arg, entry = _named_weights(shape.task, current)
    if entry is None:
        return Settings(updates, notes=notes)
    settings: dict[str, Any] = {
        "data.mean": list(entry.mean),
        "data.std": list(entry.std),
        "data.interpolation": entry.interpolation,  # where the data module resizes by name (classification)
    }
    if arg == "weights":
        settings |= shape.weights_settings(entry)
    if subcommand == "predict" and arg == "weights" and entry.categories and not current.get("ckpt_path"):
        # predicting with published weights alone: their classes are the model's (COCO's 91, VOC's 21, ...)
        if not explicit("data.class_names"):
            put("data.class_names", list(entry.categories))
    warnings = []
    for key, value in settings.items():
        if key not in current:
            continue
        if explicit(key):
            if not _same(current[key], value):
                warnings.append(
                    f"--{key} {current[key]} contradicts the weights {entry.tag!r} of {entry.name} "
                    f"({key.split('.')[-1]} {value}); keeping --{key}"
                )
            continue
        for target in (key, *[t for source, t in shape.links if source == key]):
            put(target, value)
    return Settings(updates, warnings, notes)


def _from_checkpoint(
    config: Mapping[str, Any],
    defaults: Mapping[str, Any],
    given: Collection[str],
    checkpoint: Mapping[str, Any],
    shape: TaskShape,
) -> dict[str, Any]:
    path = config.get("ckpt_path")
    saved = dict(checkpoint.get("hyper_parameters") or {})
    saved_data = dict(checkpoint.get("datamodule_hyper_parameters") or {})
    if not saved:
        raise ValueError(f"--ckpt_path {path} holds no hyper_parameters: not a checkpoint of a task")
    explicit = _explicit(config, defaults, given)  # judged before the checkpoint's values go in
    updates: dict[str, Any] = {}
    for key, value in saved.items():
        if key in DATA_LINKED or f"model.{key}" not in config:
            continue
        keys = (f"model.{key}", *([key] if key in shape.top_level else []))
        if not explicit(*keys):
            updates |= dict.fromkeys(keys, value)
        elif key in shape.architecture and config.get(keys[-1]) != value:
            flag = keys[-1]
            raise ValueError(
                f"--{flag} {config.get(flag)} contradicts the checkpoint {path} (trained with {key}={value!r}); "
                f"leave --{flag} out to use the checkpoint's"
            )
    for key in WEIGHT_KEYS:  # the checkpoint's state dict is the weights: not downloaded again
        if f"model.{key}" in config and not explicit(f"model.{key}"):
            updates[f"model.{key}"] = None
    if explicit(*shape.data_locators):
        return updates  # another dataset: the checkpoint's data settings describe its own
    for key, value in saved_data.items():
        target = f"data.{key}"
        sources = [source for source, t in shape.links if t == target]
        if target in config and not explicit(target, *sources):
            updates[target] = value
    return updates


def _explicit(config: Mapping[str, Any], defaults: Mapping[str, Any], given: Collection[str]) -> Callable[..., bool]:
    """Whether any of the keys was set by the user: on the command line, or to a value other than its default."""
    return lambda *keys: any(k in given or (k in defaults and config.get(k) != defaults[k]) for k in keys)


def _registered_model(task: str, config: Mapping[str, Any]) -> ModelEntry | None:
    """The registered model of the configuration's architecture arguments."""
    return find_model(task, **{key: config.get(f"model.{key}") for key in architecture_fields(task)})


def _named_weights(task: str, config: Mapping[str, Any]) -> tuple[str | None, WeightsEntry | None]:
    """The named weights the configuration builds from: ("weights", entry) of the task's model, else
    ("backbone_weights", entry) of the backbone, else (None, None). Registry look-ups only, no download."""
    model = _registered_model(task, config)
    names = {"weights": model.name if model else None, "backbone_weights": config.get("backbone")}
    for arg, name in names.items():
        entry = find_weights(name, config.get(f"model.{arg}")) if name else None
        if entry is not None:
            return arg, entry
    return None, None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(float(x) == float(y) for x, y in zip(a, b, strict=True))
    return a == b
