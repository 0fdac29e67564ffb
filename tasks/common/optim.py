"""Optimizers and per-step schedules shared by the tasks: linear warmup, then cosine, poly or exponential decay."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

import pytorch_lightning as pl
import torch

Optimizer = Literal["sgd", "adamw", "rmsprop"]
Decay = Literal["cosine", "poly", "exponential"]
POLY_POWER = 0.9  # DeepLab's poly schedule
# TensorFlow's RMSprop as the MobileNet papers trained with it (torchvision's reference: eps 0.0316, alpha 0.9)
RMSPROP = {"alpha": 0.9, "eps": 0.0316}


def build_optimizer(
    parameters: Iterable[torch.nn.Parameter], name: Optimizer, lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay, **RMSPROP)
    raise ValueError(f"unknown optimizer {name!r}; valid: sgd, adamw, rmsprop")


def warmup_then_decay(
    step: float,
    warmup: int,
    total: int,
    decay: Decay,
    steps_per_epoch: int = 1,
    decay_rate: float = 0.98,
    decay_epochs: float = 1.0,
) -> float:
    """The learning-rate factor at `step`: from 0.001 up to 1 over `warmup` steps, then decaying.

    cosine and poly reach 0 at `total`; exponential multiplies by `decay_rate` every `decay_epochs` epochs
    (the papers' staircase: V2 0.98 per epoch, V3 0.973 per 2 epochs), counted from the end of the warmup.
    """
    if step < warmup:
        return 0.001 + (1 - 0.001) * step / warmup
    if decay == "exponential":
        return decay_rate ** math.floor((step - warmup) / (decay_epochs * steps_per_epoch))
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1 + math.cos(math.pi * progress)) if decay == "cosine" else (1 - progress) ** POLY_POWER


def configure(
    module: pl.LightningModule,
    name: Optimizer,
    lr: float,
    momentum: float,
    weight_decay: float,
    warmup_epochs: float,
    decay: Decay,
    decay_rate: float = 0.98,
    decay_epochs: float = 1.0,
) -> dict:
    """What `configure_optimizers` returns: the optimizer over the trainable parameters, its per-step schedule."""
    if decay not in ("cosine", "poly", "exponential"):
        raise ValueError(f"unknown decay {decay!r}; valid: cosine, poly, exponential")
    trainable = [p for p in module.parameters() if p.requires_grad]
    optimizer = build_optimizer(trainable, name, lr, momentum, weight_decay)
    trainer = module.trainer
    total = max(1, int(trainer.estimated_stepping_batches))
    steps_per_epoch = max(1, total // max(1, trainer.max_epochs or 1))
    warmup = max(0, min(total - 1, int(warmup_epochs * steps_per_epoch)))

    def factor(step: int) -> float:
        return warmup_then_decay(step, warmup, total, decay, steps_per_epoch, decay_rate, decay_epochs)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
