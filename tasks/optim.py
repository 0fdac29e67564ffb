"""Optimizers and per-step schedules shared by the tasks: linear warmup, then cosine or poly decay."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

import pytorch_lightning as pl
import torch

Optimizer = Literal["sgd", "adamw"]
Decay = Literal["cosine", "poly"]
POLY_POWER = 0.9  # DeepLab's poly schedule


def build_optimizer(
    parameters: Iterable[torch.nn.Parameter], name: Optimizer, lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; valid: sgd, adamw")


def warmup_then_decay(factor_at: float, warmup: int, total: int, decay: Decay) -> float:
    """The learning-rate factor at step `factor_at`: from 0.001 up to 1 over `warmup` steps, then down to 0."""
    step = factor_at
    if step < warmup:
        return 0.001 + (1 - 0.001) * step / warmup
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
) -> dict:
    """What `configure_optimizers` returns: the optimizer and its per-step schedule over the whole fit."""
    optimizer = build_optimizer(module.parameters(), name, lr, momentum, weight_decay)
    trainer = module.trainer
    total = max(1, int(trainer.estimated_stepping_batches))
    steps_per_epoch = max(1, total // max(1, trainer.max_epochs or 1))
    warmup = max(0, min(total - 1, int(warmup_epochs * steps_per_epoch)))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_then_decay(step, warmup, total, decay))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
