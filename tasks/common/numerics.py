"""Stop training at the first non-finite loss, after saving the last good state."""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

log = logging.getLogger(__name__)
CHECKPOINT_NAME = "last-finite.ckpt"


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


class StopOnNonFiniteLoss(Callback):
    """Checks the loss before each backward pass: a NaN or infinite loss on any rank saves a checkpoint of the
    weights as they are (the last optimizer step was the last good one), then raises with the step and batch.

    The checkpoint goes to the checkpoint callback's folder (else the run's root) as `last-finite.ckpt`; resume
    from it with `--ckpt_path` after lowering the learning rate or turning on `--trainer.gradient_clip_val`.
    """

    def __init__(self) -> None:
        self.batch_idx = -1

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        self.batch_idx = batch_idx

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        bad = not bool(torch.isfinite(loss.detach()).all())
        # every rank takes the same decision, so that all of them reach the checkpoint's collective save
        if not trainer.strategy.reduce_boolean_decision(bad, all=False):
            return
        path = self.checkpoint_path(trainer)
        trainer.save_checkpoint(path)
        where = f"({float(loss.detach().float().mean())})" if bad else "on another rank"
        message = (
            f"non-finite training loss {where} at global step {trainer.global_step}, epoch {trainer.current_epoch}, "
            f"batch {self.batch_idx}; the last good state is saved to {path}"
        )
        log.error(message)
        raise NonFiniteLossError(message)

    @staticmethod
    def checkpoint_path(trainer: pl.Trainer) -> Path:
        folder = getattr(trainer.checkpoint_callback, "dirpath", None) or trainer.default_root_dir
        return Path(folder) / CHECKPOINT_NAME
