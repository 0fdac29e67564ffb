"""The one checkpoint reader and the one strict loader.

`read_state_dict` turns any file a user may pass (a plain state dict, a training checkpoint holding one under
"state_dict", one of the tasks' Lightning checkpoints) into the network's state dict, refusing pickled code
(`weights_only=True`). `load_strict` loads a state dict and names every missing, unexpected and mis-shaped key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)
LIGHTNING_PREFIX = "model."  # where the tasks' LightningModules keep their network


def load_file(path: str | Path, kind: str = "weights") -> Any:
    """`torch.load(weights_only=True)` with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{kind} file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"{path}: cannot be read as a PyTorch checkpoint: {error}") from error


def model_state(obj: Any) -> Any:
    """A plain state dict as it is; a training checkpoint's "state_dict", reduced to its `model.` entries (the
    network) when it is one of the tasks' Lightning checkpoints (whose "state_dict" already holds the EMA
    weights when training averaged them)."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
        if any(k.startswith(LIGHTNING_PREFIX) for k in obj):
            obj = {k.removeprefix(LIGHTNING_PREFIX): v for k, v in obj.items() if k.startswith(LIGHTNING_PREFIX)}
    return obj


def recorded_backbone_options(obj: Any) -> dict[str, Any]:
    """The backbone variant options one of the tasks' Lightning checkpoints records (`TaskModule`: e.g. timm's
    `norm_eps` and V1's `activation` when trained from timm's weights); {} for any other file."""
    hyper_parameters = obj.get("hyper_parameters") if isinstance(obj, dict) else None
    options = hyper_parameters.get("backbone_options") if isinstance(hyper_parameters, dict) else None
    return dict(options) if isinstance(options, dict) else {}


def read_state_dict(path: str | Path, kind: str = "weights") -> dict[str, Tensor]:
    """The network's state dict in the file at `path`: read with weights_only=True, then unwrapped."""
    return checked_state_dict(load_file(path, kind), path)


def checked_state_dict(loaded: Any, path: str | Path) -> dict[str, Tensor]:
    """The network's state dict in what `load_file` read from `path`, unwrapped; errors name the file."""
    path = Path(path)
    obj = model_state(loaded)
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict of tensors, got {type(obj).__name__}")
    others = [f"{k} ({type(v).__name__})" for k, v in obj.items() if not isinstance(v, Tensor)]
    if others:
        raise ValueError(f"{path}: expected a state dict of tensors; non-tensor values{_listing(others)}")
    return dict(obj)


def load_strict(
    module: nn.Module,
    state: Mapping[str, Tensor],
    path: str | Path,
    *,
    described: str = "",
    target: str = "this model",
    hint: str = " (a different backbone, width, variant or class count?)",
    rename: Callable[[str], str] | None = None,
    fit: Callable[[Tensor, Tensor, str], Tensor | None] | None = None,
    ignored: tuple[str, ...] = (),
    replaceable: tuple[str, ...] = (),
    scope: str = "",
) -> None:
    """`module.load_state_dict(state, strict=True)` with one error naming every misfit key.

    `rename` gives the file's key for each of the module's keys (a key map); `fit` returns the file's tensor
    shaped as the module's, or None when it does not fit (default: equal shapes only). File keys starting with an
    `ignored` prefix are not for this module. `scope` is the module's path in the model, prefixed to the keys in
    messages. The one exception to strictness, as timm does for fine-tuning: a parameter of a `replaceable` layer
    (a module path: a head's `class_layers`) whose shape differs from the file's in its first dimension only (the
    class count) keeps its fresh initialisation, and one log line names every such key with both shapes.
    """
    rename = rename or (lambda key: key)
    fit = fit or (lambda tensor, target_tensor, key: tensor if tensor.shape == target_tensor.shape else None)
    layers = tuple(f"{layer}." for layer in replaceable)
    loaded, used, missing, mismatched, replaced, replaced_layers = {}, set(), [], [], [], set()
    for key, target_tensor in module.state_dict().items():
        theirs = rename(key)
        if theirs not in state:
            missing.append(scope + theirs)
            continue
        used.add(theirs)
        tensor = fit(state[theirs], target_tensor, key)
        source_shape, shape = tuple(state[theirs].shape), tuple(target_tensor.shape)
        if tensor is None and key.startswith(layers) and _class_count_differs(source_shape, shape):
            ours = "" if theirs == key else f"{scope}{key} "  # named once where the file's key is ours
            replaced.append(f"{scope}{theirs} {source_shape} -> {ours}{shape}")
            replaced_layers.add(key.rsplit(".", 1)[0])
        elif tensor is None:
            mismatched.append(f"{scope}{theirs}: {source_shape} vs ours {shape}")
        else:
            loaded[key] = tensor
    unexpected = [scope + k for k in state if k not in used and not k.startswith(ignored)]
    if missing or unexpected or mismatched:
        raise RuntimeError(
            f"{path}{described} does not fit {target}{hint}:\n  missing keys{_listing(missing)}\n"
            f"  unexpected keys{_listing(unexpected)}\n  shape mismatches{_listing(mismatched)}"
        )
    if replaced:
        what = (
            "the final layer has another class count than this model's; it is replaced by a new, randomly "
            "initialised one"
            if len(replaced_layers) == 1
            else f"the {len(replaced_layers)} class layers have another class count than this model's; they are "
            "replaced by new, randomly initialised ones"
        )
        logger.warning("%s: %s (%s)", path, what, "; ".join(replaced))
    module.load_state_dict(loaded, strict=not replaced)


def _class_count_differs(source: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """Whether two shapes of a class layer's parameter differ in the output (class) dimension only; a 1x1 conv's
    weight (C, K, 1, 1) counts as a linear layer's (C, K)."""

    def rest(shape: tuple[int, ...]) -> tuple[int, ...]:
        inner = list(shape[1:])
        while inner and inner[-1] == 1:
            inner.pop()
        return tuple(inner)

    return bool(source) and bool(target) and source[0] != target[0] and rest(source) == rest(target)


def _listing(items: list[str], shown: int = 12) -> str:
    more = f" ... and {len(items) - shown} more" if len(items) > shown else ""
    return f" ({len(items)}): {items[:shown]}{more}"
