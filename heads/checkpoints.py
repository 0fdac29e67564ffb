"""Reading whole-model checkpoints (ours, Lightning's, torchvision's) and strict loading with named keys."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from backbones.weights import load_file, model_state


def read_model_state(path: str | Path, kind: str) -> dict[str, Tensor]:
    """A state dict from `path` (weights_only); a Lightning checkpoint yields its `model.` entries."""
    path = Path(path)
    state = model_state(load_file(path, f"{kind} weights"))
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    return state


def load_strict(module: nn.Module, state: dict[str, Tensor], path: str | Path) -> None:
    """load_state_dict(strict) with one error naming missing, unexpected and mis-shaped keys."""
    own = module.state_dict()
    mismatched = [
        f"{k}: {tuple(v.shape)} vs ours {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and v.shape != own[k].shape
    ]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected or mismatched:
        raise RuntimeError(
            f"{path} does not fit this model: missing keys {missing[:12]}, unexpected keys {unexpected[:12]}, "
            f"shape mismatches {mismatched[:12]} (a different backbone, width, variant or class count?)"
        )
    module.load_state_dict(state, strict=True)
