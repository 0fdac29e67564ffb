"""Public constructors: `create_backbone` and `create_classifier`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from backbones.builder import MobileNetBackbone, build_backbone, init_weights
from backbones.classifier import ClassificationHead, MobileNetClassifier
from backbones.layers import MEMORY_FORMAT, make_divisible
from backbones.registry import get_spec
from backbones.spec import NetworkSpec
from backbones.weights import Checkpoint, load_checkpoint, read_checkpoint, resolve_weights


def create_backbone(
    name: str,
    *,
    width: float = 1.0,
    out_indices: Sequence[int | str] | None = None,
    output_stride: int = 32,
    in_chans: int = 3,
    weights: str | Path | None = None,
    **variant_options: Any,
) -> MobileNetBackbone:
    """A feature-extracting MobileNet; `weights`: a tag of `backbones.weights.list_weights(name)` ("imagenet"), a
    URL, or a local torchvision, timm or mobilenet-suite checkpoint (a classifier's head weights are dropped)."""
    checkpoint = _read(name, weights)
    spec = _spec(name, checkpoint, variant_options)
    backbone = build_backbone(
        spec, width=width, out_indices=out_indices, output_stride=output_stride, in_chans=in_chans
    )
    backbone.variant_options = _options(name, checkpoint, variant_options)
    if checkpoint is not None:
        load_checkpoint(backbone, checkpoint)
    return backbone


def create_classifier(
    name: str,
    num_classes: int = 1000,
    *,
    width: float = 1.0,
    dropout: float | None = None,
    in_chans: int = 3,
    weights: str | Path | None = None,
    **variant_options: Any,
) -> MobileNetClassifier:
    """Backbone + the paper's classification head; `dropout=None` keeps the paper's rate; `weights` as in
    `create_backbone` (a final layer of another class count than the weights' is replaced, with a warning)."""
    checkpoint = _read(name, weights)
    spec = _spec(name, checkpoint, variant_options)
    backbone = build_backbone(spec, width=width, out_indices=(-1,), in_chans=in_chans)
    backbone.variant_options = _options(name, checkpoint, variant_options)
    head_spec = spec.classifier
    hidden = head_spec.hidden_channels
    if hidden is not None:
        hidden = make_divisible(hidden * max(head_spec.min_width, width))
    head = ClassificationHead(
        backbone.feature_info.channels()[-1],
        num_classes,
        hidden_channels=hidden,
        pool_first=head_spec.pool_first,
        hidden_norm=head_spec.hidden_norm,
        activation=head_spec.activation,
        dropout=head_spec.dropout if dropout is None else dropout,
        norm_eps=spec.norm_eps,
        norm_momentum=spec.norm_momentum,
    )
    init_weights(head)
    model = MobileNetClassifier(backbone, head).to(memory_format=MEMORY_FORMAT)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    return model


def _read(name: str, weights: str | Path | None) -> Checkpoint | None:
    path, _ = resolve_weights(name, weights)
    return None if path is None else read_checkpoint(path)


def _options(name: str, checkpoint: Checkpoint | None, variant_options: dict[str, Any]) -> dict[str, Any]:
    """The spec options a model is built with: the source's parity settings (timm's norm_eps, V1's relu6) as
    defaults, and the options the caller names explicitly, which win."""
    options = checkpoint.spec_options(name) if checkpoint is not None else {}
    return {**options, **variant_options}


def _spec(name: str, checkpoint: Checkpoint | None, variant_options: dict[str, Any]) -> NetworkSpec:
    return get_spec(name, **_options(name, checkpoint, variant_options))
