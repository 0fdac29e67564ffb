"""Named published weights as a predictor or a command line names them: `"<model>:<tag>"` ("ssdlite320_v3_large:coco",
timm's "<model>.<tag>" too), or a bare tag that a task's architecture arguments narrow to one model ("coco_voc" with
head="lraspp"). Model names and their architecture arguments come from the model registry (`tasks.models`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from backbones.weights import DEFAULT_TAG, WeightsEntry, find_weights, get_weights, weights_names, weights_tags
from tasks.models import find_model, list_models, model_entry

_NAME_TAG = re.compile(r"(?P<name>\w+)[:.](?P<tag>[\w-]+)")
_TAG = re.compile(r"[\w-]+")


def model_arguments(task: str, name: str) -> dict[str, str] | None:
    """The architecture arguments of `task`'s model `name` (`{"backbone": "v3_large"}` for "ssdlite320_v3_large"), or
    None when `name` is not a model of `task`."""
    if name not in list_models(task):
        return None
    return dict(model_entry(name).arguments)


def architecture_fields(task: str) -> list[str]:
    """The task arguments that name one of its models (detect: backbone; segment: head and backbone)."""
    return sorted({key for name in list_models(task) for key in model_entry(name).arguments})


def named_weights(task: str) -> list[str]:
    """Every `"<name>:<tag>"` (aliases too) of `task`'s models."""
    names = [name for name in weights_names() if model_arguments(task, name) is not None]
    return [f"{name}:{tag}" for name in names for tag in weights_tags(name)]


def default_entry(name: str, tag: str | None = None) -> WeightsEntry:
    """The entry `tag` of `name`; without a tag, its default ("imagenet") or its only one."""
    if tag is None:
        tags = weights_tags(name)
        tag = DEFAULT_TAG if DEFAULT_TAG in tags or len(tags) != 1 else tags[0]
    return get_weights(name, tag)  # an unknown name or tag: a ValueError listing the valid ones


def resolve_source(task: str, source: str | Path, **architecture: str) -> Path | WeightsEntry:
    """The checkpoint file `source` is, else the named weights of `task` it names; else a FileNotFoundError listing
    both kinds of valid input."""
    fields = architecture_fields(task)
    unknown = sorted(set(architecture) - set(fields))
    if unknown:
        raise TypeError(f"from_checkpoint: unknown arguments {unknown}; it takes {fields}")
    if Path(source).is_file():
        return Path(source)
    entry = _named(task, source, architecture) if isinstance(source, str) else None
    if entry is not None:
        return entry
    raise FileNotFoundError(
        f"checkpoint {source}: no such file; pass the path of a .ckpt written by `python -m tasks.{task} fit` "
        f"(e.g. <run folder>/checkpoints/last.ckpt), or named weights: {named_weights(task)}"
        + (f" (with {architecture})" if architecture else "")
    )


def _named(task: str, source: str, architecture: dict[str, str]) -> WeightsEntry | None:
    """The entry `source` names ("name:tag", or a tag that `architecture` narrows to one model), or None."""
    match = _NAME_TAG.fullmatch(source)
    named = model_arguments(task, match["name"]) if match else None
    if match and named is not None:
        contradicted = {k: v for k, v in architecture.items() if named[k] != v}
        if contradicted:
            raise ValueError(f"weights {source!r} are for {named}, not {contradicted}")
        return get_weights(match["name"], match["tag"])
    if not _TAG.fullmatch(source):
        return None
    candidates = []
    for name in weights_names():
        found = model_arguments(task, name)
        if found is not None and source in weights_tags(name) and architecture.items() <= found.items():
            candidates.append(get_weights(name, source))
    if len(candidates) > 1:
        choices = [f"{entry.name}:{source}" for entry in candidates]
        fields = architecture_fields(task)
        raise ValueError(f"weights {source!r} exist for several models, {choices}: pass {fields} or one of these")
    return candidates[0] if candidates else None


def initial_weights(task: str, hparams: dict[str, Any]) -> WeightsEntry | None:
    """The named weights (a tag or a registered URL) that task hyper-parameters build their model from."""
    model = find_model(task, **hparams)
    if hparams.get("weights") is None or model is None:
        return None
    return find_weights(model.name, hparams["weights"])
