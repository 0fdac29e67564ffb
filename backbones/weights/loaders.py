"""Loading a local file into a backbone, a classifier or a task model: read, unwrap, map keys by the detected
source format, load strictly. Every loader here goes through `reader` and `keymaps`.

Fine-tuning to another class count: a head declares the layers whose output size is the class count as
`class_layers` (module paths relative to the head); those, and only those, may differ from the file's in their
class dimension, and then keep the head's fresh initialisation (`load_strict`'s `replaceable`, one log line).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from backbones.builder import MobileNetBackbone
from backbones.registry import variant_options
from backbones.weights.keymaps import (
    SOURCE_OPTIONS,
    STEM_WEIGHT,
    TaskKeymap,
    detect_format,
    leaf_map,
)
from backbones.weights.reader import checked_state_dict, load_file, load_strict, recorded_backbone_options
from backbones.weights.registry import find_weights


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    format: str
    state_dict: dict[str, Tensor]
    recorded_options: Mapping[str, Any] = field(default_factory=dict)  # what one of our Lightning files records

    def spec_options(self, name: str) -> dict[str, Any]:
        """The variant the weights were trained as: the source's parity settings, or what our checkpoint records."""
        return {**SOURCE_OPTIONS.get(self.format, {}).get(name, {}), **self.recorded_options}


def read_checkpoint(path: str | Path) -> Checkpoint:
    """A MobileNet state dict (or a training checkpoint holding one), its detected source format and the backbone
    options a Lightning checkpoint of ours records."""
    path = Path(path)
    loaded = load_file(path)
    state_dict = checked_state_dict(loaded, path)
    return Checkpoint(path, detect_format(state_dict, path), state_dict, recorded_backbone_options(loaded))


def check_recorded_options(backbone: MobileNetBackbone, recorded: Mapping[str, Any], path: Path) -> None:
    """A task model built as another variant than the one its weights file records (`recorded_backbone_options`):
    one error naming the options and the flag that builds the recorded variant. Built in front of weights it was
    not trained with (e.g. ReLU where timm's V1 has ReLU6), a network loads without a misfit and computes
    something else."""
    name = backbone.spec.name
    built = {**variant_options(name), **getattr(backbone, "variant_options", {})}
    wrong = {key: value for key, value in recorded.items() if built.get(key) != value}
    if wrong:
        needs = ", ".join(f"{key}={value!r}" for key, value in wrong.items())
        has = ", ".join(f"{key}={built.get(key)!r}" for key in wrong)
        raise WeightsVariantError(
            f"{path} was trained with backbone options {needs}; this model has {has}: pass "
            f"--model.backbone_options '{json.dumps(dict(recorded))}' (backbone_options={dict(recorded)!r})"
        )


def load_checkpoint(model: nn.Module, checkpoint: Checkpoint) -> None:
    """Load `checkpoint` into a MobileNetBackbone (head weights ignored) or a MobileNetClassifier, strictly.

    The one exception, as timm does for fine-tuning: a classifier whose final layer (its head's `class_layers`) has
    another class count than the checkpoint's keeps its freshly initialised final layer, and a warning says so.
    """
    backbone_only = isinstance(model, MobileNetBackbone)
    backbone = model if backbone_only else model.backbone
    leaves = leaf_map(checkpoint.format, backbone)
    prefix = "backbone." if backbone_only else ""

    def rename(key: str) -> str:
        leaf, param = (prefix + key).rsplit(".", 1)
        return f"{leaves.get(leaf, leaf)}.{param}"

    # a backbone ignores the source's classifier; our own files keep theirs under "head."
    head_leaves = tuple(theirs + "." for ours, theirs in leaves.items() if ours.startswith("head.")) + ("head.",)
    load_strict(
        model,
        _source_state(checkpoint),
        checkpoint.path,
        described=f" ({checkpoint.format} format)",
        target=f"{backbone.spec.name} at width {backbone.width}",
        hint="",
        rename=rename,
        fit=lambda tensor, target, key: _fit(tensor, target, prefix + key),
        ignored=head_leaves if backbone_only else (),
        replaceable=() if backbone_only else class_layers(model),
    )


def class_layers(model: nn.Module) -> tuple[str, ...]:
    """The model's layers whose output size is the class count, as module paths: its head's `class_layers`."""
    head = getattr(model, "head", None)
    return tuple(f"head.{layer}" for layer in getattr(head, "class_layers", ()))


def _source_state(checkpoint: Checkpoint) -> dict[str, Tensor]:
    """The checkpoint's tensors; our own backbone-only files are put in the classifier's namespace."""
    state = checkpoint.state_dict
    if checkpoint.format == "mobilenet_suite" and STEM_WEIGHT not in state:
        return {f"backbone.{k}": v for k, v in state.items()}
    return state


def _fit(tensor: Tensor, target: Tensor, key: str) -> Tensor | None:
    """The source tensor shaped as our parameter, or None when it does not fit."""
    if tensor.shape == target.shape:
        return tensor
    if tensor.shape == target.shape + (1, 1):  # a 1x1 conv stored where we use a linear layer
        return tensor.flatten(1)
    if key == STEM_WEIGHT and tensor.ndim == 4 and tensor.shape[1] == 3 and tensor.shape[0] == target.shape[0]:
        return adapt_input_channels(tensor, target.shape[1])
    return None


def adapt_input_channels(weight: Tensor, in_chans: int) -> Tensor:
    """RGB stem weights for another channel count: summed for one channel, else tiled and rescaled (as timm)."""
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = -(-in_chans // 3)
    return weight.repeat(1, repeats, 1, 1)[:, :in_chans] * (3 / in_chans)


def load_task_weights(model: nn.Module, path: str | Path, keymaps: Sequence[TaskKeymap], kind: str) -> None:
    """Load a whole task model (`backbone` + `head`) from one of ours (also inside a Lightning checkpoint) or from
    a source that one of `keymaps` recognises, strictly; `kind` names the model in errors.

    Weights of another class count fine-tune: the head's `class_layers` keep their fresh initialisation and one
    log line names them; any other misfit is the strict error.
    """
    path = Path(path)
    loaded = load_file(path, f"{kind} weights")
    state = checked_state_dict(loaded, path)
    if STEM_WEIGHT in state:
        check_recorded_options(model.backbone, recorded_backbone_options(loaded), path)
        load_strict(model, state, path, replaceable=class_layers(model))
        return
    for keymap in keymaps:
        if keymap.marker in state:
            backbone, head = keymap.split(model, state, path)
            load_checkpoint(model.backbone, Checkpoint(path, keymap.source, backbone))
            layers = getattr(model.head, "class_layers", ())
            described = f" ({keymap.source} format)"
            load_strict(model.head, head, path, described=described, replaceable=layers, scope="head.")
            return
    known = [keymap.source for keymap in keymaps] + ["mobilenet_suite"]
    raise ValueError(f"{path}: not a {kind} checkpoint of any known format {known}; first keys: {list(state)[:5]}")


def check_build_options(name: str, weights: str | Path | None, options: Mapping[str, Any]) -> None:
    """Named weights (`weights=` a tag or a registered URL of `name`) whose entry records build options that the
    architecture needs (`WeightsEntry.build_options`, e.g. torchvision's SSDLite COCO weights: `reduced_tail=True`)
    and a model built with other `options`: one error naming the option and the argument and flag to pass. Checked
    before any download; the architecture is never changed behind the user's back."""
    entry = find_weights(name, weights)
    if entry is None:
        return
    wrong = {key: value for key, value in entry.build_options.items() if options.get(key) != value}
    if wrong:
        needs = ", ".join(f"{key}={value!r}" for key, value in wrong.items())
        has = ", ".join(f"{key}={options.get(key)!r}" for key in wrong)
        flags = " ".join(f"--model.{key} {_flag_value(value)}" for key, value in wrong.items())
        raise WeightsVariantError(
            f"weights {entry.tag!r} of {name} ({entry.source}'s) need {needs}; this model has {has}: "
            f"pass {needs} ({flags})"
        )


class WeightsVariantError(ValueError):
    """Named weights asked of a model variant they were not trained for (`check_build_options`)."""


def _flag_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
