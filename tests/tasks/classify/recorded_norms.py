"""A callback for the DDP test of the weight average: each rank's norm statistics as its validation runs, written to
`<out_dir>/rank<N>.pt`. Given as `--trainer.callbacks+=tests.tasks.classify.recorded_norms.RecordNormStatistics
--trainer.callbacks.out_dir DIR`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback


class RecordNormStatistics(Callback):
    """The running means and variances of `pl_module.model` at each validation's first batch (after the weight
    average has swapped its weights in and recomputed its statistics); the last validation's stay on disk."""

    def __init__(self, out_dir: str) -> None:
        super().__init__()
        self.out_dir = Path(out_dir)

    def on_validation_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int, *args: Any
    ) -> None:
        if batch_idx or trainer.sanity_checking:
            return
        statistics = {k: v.clone() for k, v in pl_module.model.named_buffers() if "running_" in k}
        self.out_dir.mkdir(parents=True, exist_ok=True)
        torch.save(statistics, self.out_dir / f"rank{trainer.global_rank}.pt")
