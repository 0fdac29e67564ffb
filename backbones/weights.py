"""Loading torchvision's, timm's and this project's MobileNet checkpoints from local files.

The format is detected from the keys. Each source's key map is derived from our module structure, so one
map serves every width and variant; loading is strict and names missing and unexpected keys.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from backbones.builder import MobileNetBackbone
from backbones.layers import ConvNormAct

logger = logging.getLogger(__name__)
FORMATS = ("torchvision", "timm", "mobilenet_suite")

# Settings a source needs for exact parity, applied as spec options (our defaults follow torchvision).
SOURCE_OPTIONS: dict[str, dict[str, dict[str, Any]]] = {
    "timm": {
        "v1": {"norm_eps": 1e-5, "activation": "relu6"},
        "v2": {"norm_eps": 1e-5},
        "v3_large": {"norm_eps": 1e-5},
        "v3_small": {"norm_eps": 1e-5},
    },
}

_BLOCK_PARTS = ("expand", "depthwise", "squeeze_excite", "project")
_STEM_WEIGHT = "backbone.stem.conv.weight"
_CLASSIFIER = "head.fc."
LIGHTNING_PREFIX = "model."  # where the tasks' LightningModules keep their network


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    format: str
    state_dict: dict[str, Tensor]

    def spec_options(self, name: str) -> dict[str, Any]:
        return dict(SOURCE_OPTIONS.get(self.format, {}).get(name, {}))


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
    network) when it is one of the tasks' Lightning checkpoints."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
        if any(k.startswith(LIGHTNING_PREFIX) for k in obj):
            obj = {k.removeprefix(LIGHTNING_PREFIX): v for k, v in obj.items() if k.startswith(LIGHTNING_PREFIX)}
    return obj


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read a state dict (or a training checkpoint holding one under "state_dict") with weights_only=True."""
    path = Path(path)
    obj = model_state(load_file(path))
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"{path}: expected a state dict of tensors, got {type(obj).__name__}")
    state_dict = dict(obj)
    return Checkpoint(path, detect_format(state_dict, path), state_dict)


def detect_format(state_dict: dict[str, Tensor], path: Path | str = "<state dict>") -> str:
    if "features.0.0.weight" in state_dict:
        return "torchvision"
    if "conv_stem.weight" in state_dict:
        return "timm"
    if _STEM_WEIGHT in state_dict:
        return "mobilenet_suite"
    if "stem.conv.weight" in state_dict:  # a backbone's own state dict
        return "mobilenet_suite"
    first = list(state_dict)[:5]
    raise ValueError(f"{path}: not a MobileNet checkpoint of any known format {FORMATS}; first keys: {first}")


def load_checkpoint(model: nn.Module, checkpoint: Checkpoint) -> None:
    """Load `checkpoint` into a MobileNetBackbone (head weights ignored) or a MobileNetClassifier, strictly.

    The one exception, as timm does for fine-tuning: a classifier whose final layer has another class count
    than the checkpoint's keeps its freshly initialised final layer, and a warning says so.
    """
    backbone_only = isinstance(model, MobileNetBackbone)
    backbone = model if backbone_only else model.backbone
    source = _source_state(checkpoint)
    leaf_map = _leaf_map(checkpoint.format, backbone)
    prefix = "backbone." if backbone_only else ""
    state, used, missing, mismatched, replaced = {}, set(), [], [], []
    for key, target in model.state_dict().items():
        leaf, param = (prefix + key).rsplit(".", 1)
        theirs = f"{leaf_map.get(leaf, leaf)}.{param}"
        if theirs not in source:
            missing.append(theirs)
            continue
        used.add(theirs)
        tensor = _fit(source[theirs], target, prefix + key)
        if tensor is None and key.startswith(_CLASSIFIER) and not backbone_only:
            replaced.append(f"{theirs} {tuple(source[theirs].shape)} -> {key} {tuple(target.shape)}")
        elif tensor is None:
            mismatched.append(f"{theirs}: {tuple(source[theirs].shape)} vs ours {tuple(target.shape)}")
        else:
            state[key] = tensor
    # a backbone ignores the source's classifier; our own files keep theirs under "head."
    head_leaves = tuple(theirs + "." for ours, theirs in leaf_map.items() if ours.startswith("head.")) + ("head.",)
    unexpected = [k for k in source if k not in used and not (backbone_only and k.startswith(head_leaves))]
    if missing or unexpected or mismatched:
        raise RuntimeError(
            f"{checkpoint.path} ({checkpoint.format} format) does not fit {backbone.spec.name} "
            f"at width {backbone.width}:\n  missing keys{_listing(missing)}\n  unexpected keys{_listing(unexpected)}\n"
            f"  shape mismatches{_listing(mismatched)}"
        )
    if replaced:
        logger.warning(
            "%s: the final layer has another class count than this model's; it is replaced by a new, randomly "
            "initialised one (%s)",
            checkpoint.path,
            "; ".join(replaced),
        )
    model.load_state_dict(state, strict=not replaced)


def _listing(items: list[str], shown: int = 12) -> str:
    more = f" ... and {len(items) - shown} more" if len(items) > shown else ""
    return f" ({len(items)}): {items[:shown]}{more}"


def _source_state(checkpoint: Checkpoint) -> dict[str, Tensor]:
    """The checkpoint's tensors; our own backbone-only files are put in the classifier's namespace."""
    state = checkpoint.state_dict
    if checkpoint.format == "mobilenet_suite" and _STEM_WEIGHT not in state:
        return {f"backbone.{k}": v for k, v in state.items()}
    return state


def _fit(tensor: Tensor, target: Tensor, key: str) -> Tensor | None:
    """The source tensor shaped as our parameter, or None when it does not fit."""
    if tensor.shape == target.shape:
        return tensor
    if tensor.shape == target.shape + (1, 1):  # a 1x1 conv stored where we use a linear layer
        return tensor.flatten(1)
    if key == _STEM_WEIGHT and tensor.ndim == 4 and tensor.shape[1] == 3 and tensor.shape[0] == target.shape[0]:
        return adapt_input_channels(tensor, target.shape[1])
    return None


def adapt_input_channels(weight: Tensor, in_chans: int) -> Tensor:
    """RGB stem weights for another channel count: summed for one channel, else tiled and rescaled (as timm)."""
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = -(-in_chans // 3)
    return weight.repeat(1, repeats, 1, 1)[:, :in_chans] * (3 / in_chans)


def _leaf_map(fmt: str, backbone: MobileNetBackbone) -> dict[str, str]:
    """Our leaf-module paths (classifier namespace) -> the source's."""
    if fmt == "mobilenet_suite":
        return {}
    if fmt == "torchvision":
        if backbone.spec.name not in ("v2", "v3_large", "v3_small"):
            raise ValueError(f"torchvision has no {backbone.spec.name} model; its MobileNets: v2, v3_large, v3_small")
        return _torchvision_map(backbone)
    return _timm_map(backbone)


def _conv_norm(ours: str, conv: str, norm: str) -> dict[str, str]:
    return {f"{ours}.conv": conv, f"{ours}.norm": norm}


def _torchvision_map(backbone: MobileNetBackbone) -> dict[str, str]:
    v2 = backbone.spec.name == "v2"
    leaves = _conv_norm("backbone.stem", "features.0.0", "features.0.1")
    for i, block in enumerate(backbone.blocks):
        ours, theirs = f"backbone.blocks.{i}", f"features.{i + 1}"
        if isinstance(block, ConvNormAct):
            leaves |= _conv_norm(ours, f"{theirs}.0", f"{theirs}.1")
            continue
        inner = f"{theirs}.{'conv' if v2 else 'block'}"
        j = 0
        for part in _BLOCK_PARTS:
            if getattr(block, part) is None:
                continue
            if part == "squeeze_excite":
                leaves |= {f"{ours}.{part}.reduce": f"{inner}.{j}.fc1", f"{ours}.{part}.expand": f"{inner}.{j}.fc2"}
            elif part == "project" and v2:  # V2 keeps the projection's conv and BN as two entries
                leaves |= _conv_norm(f"{ours}.{part}", f"{inner}.{j}", f"{inner}.{j + 1}")
            else:
                leaves |= _conv_norm(f"{ours}.{part}", f"{inner}.{j}.0", f"{inner}.{j}.1")
            j += 1
    last = f"features.{len(backbone.blocks) + 1}"
    if v2:
        leaves |= _conv_norm("head.conv", f"{last}.0", f"{last}.1") | {"head.fc": "classifier.1"}
    else:
        leaves |= {"head.hidden.0": "classifier.0", "head.fc": "classifier.3"}
    return leaves


def _timm_map(backbone: MobileNetBackbone) -> dict[str, str]:
    leaves = _conv_norm("backbone.stem", "conv_stem", "bn1")
    stage, index, previous = -1, 0, None
    for i, (row, block) in enumerate(zip(backbone.spec.blocks, backbone.blocks, strict=True)):
        # timm groups the paper's rows into stages of equal output channels
        stage, index = (stage, index + 1) if row.out_channels == previous else (stage + 1, 0)
        previous = row.out_channels
        ours, theirs = f"backbone.blocks.{i}", f"blocks.{stage}.{index}"
        if isinstance(block, ConvNormAct):
            leaves |= _conv_norm(ours, f"{theirs}.conv", f"{theirs}.bn1")
            continue
        if block.expand is None:  # timm's DepthwiseSeparableConv
            parts = {"depthwise": ("conv_dw", "bn1"), "project": ("conv_pw", "bn2")}
        else:
            parts = {"expand": ("conv_pw", "bn1"), "depthwise": ("conv_dw", "bn2"), "project": ("conv_pwl", "bn3")}
        for part, (conv, norm) in parts.items():
            leaves |= _conv_norm(f"{ours}.{part}", f"{theirs}.{conv}", f"{theirs}.{norm}")
        leaves |= {
            f"{ours}.squeeze_excite.reduce": f"{theirs}.se.conv_reduce",
            f"{ours}.squeeze_excite.expand": f"{theirs}.se.conv_expand",
        }
    head = {"head.hidden.0": "conv_head", "head.fc": "classifier"}
    return leaves | _conv_norm("head.conv", "conv_head", "bn2") | head
