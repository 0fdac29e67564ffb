"""The exponential moving average of the weights, validated and saved with batch-norm statistics of its own.

Lightning's `EMAWeightAveraging` (torch's `AveragedModel`) averages the norms' running means and variances along
with the weights by default, as timm's ModelEmaV2/V3 do. An average of statistics is not the statistics of the
averaged weights: over a short run, where the weights still move fast, the two part, and the average validates
far below the model it follows. So this callback averages the weights only (`use_buffers=False`: the average keeps
the model's statistics between updates) and, as `torch.optim.swa_utils.update_bn` does for averaged weights,
recomputes the statistics of the average before each validation and when training ends: cumulative averages over
forward passes of the last `RECOMPUTE_BATCHES` training batches (under DDP, of every rank's, averaged over the
ranks). Validation, the checkpoints written after it and the final model then all hold the average with its own
statistics.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EMAWeightAveraging
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

RECOMPUTE_BATCHES = 8


def trained_norms(model: nn.Module) -> list[_BatchNorm]:
    """The batch norms of `model` that train: their affine weights require grad (not a frozen backbone's)."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and getattr(m.weight, "requires_grad", False)]


def recompute_norm_statistics(model: nn.Module, batches: Iterable[Tensor]) -> list[_BatchNorm]:
    """Replace the running mean and variance of every trained norm (`trained_norms`) by their cumulative averages
    over forward passes of `batches`, without autograd, and return those norms. The rest of the model stays in eval
    mode, so frozen norms keep theirs; `update_bn` would recompute those too."""
    norms = trained_norms(model)
    momenta = [norm.momentum for norm in norms]
    training = model.training
    model.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the batches
        norm.train()
    with torch.no_grad():
        for images in batches:
            model(images)
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    model.train(training)
    return norms


class EMAWithOwnNormStatistics(EMAWeightAveraging):
    """`EMAWeightAveraging` of the weights at `decay` per optimizer step, whose norm statistics are recomputed for
    the averaged weights from the last `batches` training batches (their images: `batch[0]`)."""

    def __init__(self, decay: float, batches: int = RECOMPUTE_BATCHES) -> None:
        super().__init__(decay=decay, use_buffers=False)
        self.recent_images: deque[Tensor] = deque(maxlen=batches)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self.recent_images.append(batch[0])

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_epoch_start(trainer, pl_module)  # the average's weights are now pl_module's
        if self._average_model is not None and self.recent_images:
            self.recompute(trainer, pl_module)  # swapped back into the average after validation

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)  # the average's weights and statistics copied into pl_module
        if self.recent_images:
            self.recompute(trainer, pl_module)

    def recompute(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        norms = recompute_norm_statistics(pl_module.model, self.recent_images)
        if trainer.world_size > 1:  # each rank saw as many batches of its own: their mean is the average over all
            for norm in norms:
                for statistic in (norm.running_mean, norm.running_var):
                    statistic.copy_(trainer.strategy.reduce(statistic, reduce_op="mean"))
