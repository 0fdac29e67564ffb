"""Checkpoints that survive a kill: atomic writes, a `last.ckpt` every N steps, `--ckpt_path last` across runs."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins import TorchCheckpointIO
from pytorch_lightning.callbacks import ModelCheckpoint

log = logging.getLogger(__name__)
LAST_EVERY_N_STEPS = 50  # a kill loses at most this many optimizer steps


class AtomicCheckpointIO(TorchCheckpointIO):
    """`torch.save` to a temporary file beside the target, fsync, then `os.replace`: a kill during a write leaves
    the previous checkpoint complete and readable (Lightning's own writer stages in the system temp folder,
    which is a copy, not a rename, when that is another file system)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with staging.open("wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(staging, path)
        finally:
            staging.unlink(missing_ok=True)


class LastCheckpoint(ModelCheckpoint):
    """`last.ckpt` every `every_n_train_steps` optimizer steps and at the end of every training epoch.

    Beside the task's best-metric checkpoint; `--ckpt_path last` resumes from it, mid-epoch included.
    Set on the command line as `--last_checkpoint.every_n_train_steps N`.
    """

    def __init__(self, every_n_train_steps: int = LAST_EVERY_N_STEPS) -> None:
        if every_n_train_steps < 1:
            raise ValueError(f"every_n_train_steps must be >= 1, got {every_n_train_steps}")
        super().__init__(save_last=True, save_top_k=0, every_n_train_steps=every_n_train_steps)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


def find_last_checkpoint(root: str | Path) -> Path | None:
    """The most recently written `last.ckpt` under `root` (any run version), or None."""
    candidates = [p for p in Path(root).glob("**/checkpoints/last.ckpt") if p.is_file()]
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None
