"""Key maps from torchvision's and timm's checkpoints to this project's module names.

A source's format is detected from its keys. The backbone maps are derived from our module structure, so one
map serves every width and variant. A task's own map (`TaskKeymap`, in
`tasks/<task>/weights.py`) splits a whole-model state dict into a backbone state dict in a source's format
(loaded through these maps) and a head state dict.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from backbones.attention import MobileAttention
from backbones.builder import MobileNetBackbone
from backbones.layers import ConvNormAct

FORMATS = ("torchvision", "timm", "mobilenet_suite")
STEM_WEIGHT = "backbone.stem.conv.weight"  # every one of our models has it: classifier, detector, segmenter

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
# timm writes every inverted residual of V4's tables as a UniversalInvertedResidual (dw_start, pw_exp, dw_mid,
# pw_proj), the V1-V3 ones as DepthwiseSeparableConv or InvertedResidual
TIMM_UNIVERSAL_PREFIX = "v4_"
TORCHVISION_CONV_NORM = {"0": "conv", "1": "norm"}  # torchvision's Conv2dNormActivation children
StateDict = dict[str, Tensor]


# -- backbones and classifiers ----------------------------------------------------------------------------------
def detect_format(state_dict: StateDict, path: Path | str = "<state dict>") -> str:
    if "features.0.0.weight" in state_dict:
        return "torchvision"
    if "conv_stem.weight" in state_dict:
        return "timm"
    if STEM_WEIGHT in state_dict:
        return "mobilenet_suite"
    if "stem.conv.weight" in state_dict:  # a backbone's own state dict
        return "mobilenet_suite"
    first = list(state_dict)[:5]
    raise ValueError(f"{path}: not a MobileNet checkpoint of any known format {FORMATS}; first keys: {first}")


def leaf_map(fmt: str, backbone: MobileNetBackbone) -> dict[str, str]:
    """Our leaf-module paths (classifier namespace: `backbone.*`, `head.*`) -> the source's."""
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
    universal = backbone.spec.name.startswith(TIMM_UNIVERSAL_PREFIX)
    positions = backbone.spec.stage_positions()
    for i, ((stage, index), block) in enumerate(zip(positions, backbone.blocks, strict=True)):
        ours, theirs = f"backbone.blocks.{i}", f"blocks.{stage}.{index}"
        if isinstance(block, ConvNormAct):
            leaves |= _conv_norm(ours, f"{theirs}.conv", f"{theirs}.bn1")
        elif isinstance(block, MobileAttention):
            leaves |= _timm_attention(ours, theirs)
        elif block.depthwise is None and block.start is None and block.expand.conv.kernel_size[0] > 1:
            parts = {"expand": ("conv_exp", "bn1"), "project": ("conv_pwl", "bn2")}  # timm's EdgeResidual
            leaves |= _parts(ours, theirs, parts)
        elif universal:
            names = {"start": "dw_start", "expand": "pw_exp", "depthwise": "dw_mid", "project": "pw_proj"}
            parts = {part: (f"{name}.conv", f"{name}.bn") for part, name in names.items()}
            leaves |= _parts(ours, theirs, parts) | {f"{ours}.layer_scale": f"{theirs}.layer_scale"}
        elif block.expand is None:  # timm's DepthwiseSeparableConv
            leaves |= _parts(ours, theirs, {"depthwise": ("conv_dw", "bn1"), "project": ("conv_pw", "bn2")})
        else:
            parts = {"expand": ("conv_pw", "bn1"), "depthwise": ("conv_dw", "bn2"), "project": ("conv_pwl", "bn3")}
            leaves |= _parts(ours, theirs, parts)
        if getattr(block, "squeeze_excite", None) is not None:
            leaves |= {
                f"{ours}.squeeze_excite.reduce": f"{theirs}.se.conv_reduce",
                f"{ours}.squeeze_excite.expand": f"{theirs}.se.conv_expand",
            }
    head = {"head.hidden.0": "conv_head", "head.fc": "classifier"}
    head |= _conv_norm("head.pooled_conv", "conv_head", "norm_head")
    return leaves | _conv_norm("head.conv", "conv_head", "bn2") | head


def _parts(ours: str, theirs: str, parts: dict[str, tuple[str, str]]) -> dict[str, str]:
    leaves = {}
    for part, (conv, norm) in parts.items():
        leaves |= _conv_norm(f"{ours}.{part}", f"{theirs}.{conv}", f"{theirs}.{norm}")
    return leaves


def _timm_attention(ours: str, theirs: str) -> dict[str, str]:
    """Our MobileAttention -> timm's MobileAttention with MultiQueryAttention2d."""
    attention, attn = f"{ours}.attention", f"{theirs}.attn"
    leaves = {f"{ours}.norm": f"{theirs}.norm", f"{ours}.layer_scale": f"{theirs}.layer_scale"}
    for name in ("query", "key", "value", "output"):
        leaves[f"{attention}.{name}"] = f"{attn}.{name}.proj"
    for name in ("key", "value"):
        leaves |= _conv_norm(f"{attention}.{name}_down", f"{attn}.{name}.down_conv", f"{attn}.{name}.norm")
    return leaves


# -- whole task models ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskKeymap:
    """A source's whole-model layout: `marker` is a key only its files have; `split(model, state, path)` returns
    the backbone's state dict in the source's backbone format and the head's state dict in our names."""

    source: str
    marker: str
    split: Callable[[nn.Module, StateDict, Path], tuple[StateDict, StateDict]]
