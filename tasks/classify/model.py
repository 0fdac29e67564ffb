"""Image classification on any MobileNet at any width and resolution: `python -m tasks.classify fit --backbone v1`."""

from __future__ import annotations

from typing import Any

from torchvision.transforms import v2

from backbones import create_classifier
from backbones.builder import set_norm_momentum
from backbones.classifier import MobileNetClassifier
from tasks.common.task import NORM_MOMENTUM


def build_classifier(
    backbone: str,
    num_classes: int,
    *,
    width: float = 1.0,
    dropout: float | None = None,
    weights: str | None = None,
    backbone_options: dict[str, Any] | None = None,
) -> MobileNetClassifier:
    """The paper's classifier; `weights` is any checkpoint `create_classifier` reads (another class count gets a
    new final layer, with a warning). From scratch, every batch norm moves at the tasks' `NORM_MOMENTUM`.
    `backbone_options`: spec options of the backbone variant (e.g. V1's `activation`, `norm_eps`); the tasks pass
    back the ones a checkpoint recorded (`TaskModule`), so that it rebuilds the variant it was trained as.
    """
    options = backbone_options or {}
    model = create_classifier(backbone, num_classes, width=width, dropout=dropout, weights=weights, **options)
    if weights is None:
        set_norm_momentum(model, NORM_MOMENTUM)
    return model


def build_mixing(mixup_alpha: float, cutmix_alpha: float, num_classes: int) -> v2.Transform | None:
    """torchvision's batch MixUp / CutMix (one of them per batch when both are on), or None."""
    if mixup_alpha < 0 or cutmix_alpha < 0:
        raise ValueError(f"mixup_alpha and cutmix_alpha must be >= 0, got {mixup_alpha} and {cutmix_alpha}")
    mixes = []
    if mixup_alpha > 0:
        mixes.append(v2.MixUp(alpha=mixup_alpha, num_classes=num_classes))
    if cutmix_alpha > 0:
        mixes.append(v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes))
    if not mixes:
        return None
    return mixes[0] if len(mixes) == 1 else v2.RandomChoice(mixes)
