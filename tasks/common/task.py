"""What the three tasks share: evaluation hooks, one reporting path for metrics, and the common callbacks."""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

from tasks.common.numerics import StopOnNonFiniteLoss

log = logging.getLogger(__name__)
# batch-norm momentum of models trained from scratch here: running averages that keep up with a short schedule
NORM_MOMENTUM = 0.1


class TaskModule(pl.LightningModule):
    """Validation and test batches go to `evaluate_batch`; at the epoch end `evaluation_scores` gives the metrics
    (and resets their state), which are logged under `val/` or `test/` (per-class entries, named `x/<class>`,
    only printed), with the count of replaced unreadable samples, and printed as a table by validate / test.
    """

    def evaluate_batch(self, batch: Any) -> None:
        raise NotImplementedError

    def evaluation_scores(self) -> dict[str, float]:
        raise NotImplementedError

    def format_scores(self, scores: dict[str, float]) -> str:
        return "  ".join(f"{name} {value:.4f}" for name, value in scores.items())

    def evaluated_images(self, dataset: Any) -> int:
        return len(dataset)

    def prediction_writer(self) -> Callback:
        raise NotImplementedError

    def configure_callbacks(self) -> list[Callback]:
        return [self.prediction_writer(), StopOnNonFiniteLoss()]

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.evaluate_batch(batch)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self.evaluate_batch(batch)

    def on_validation_epoch_end(self) -> None:
        self._report("val")

    def on_test_epoch_end(self) -> None:
        self._report("test")

    def evaluation_dataset(self, prefix: str) -> Any:
        datamodule = self.trainer.datamodule
        return datamodule.val_dataset if prefix == "val" else datamodule.test_dataset

    def report_skips(self, dataset: Any, split: str) -> None:
        """Unreadable or invalid samples are replaced by the next good one; say how many, every epoch."""
        skipped = getattr(dataset, "skipped_images", 0)
        if skipped:
            self.log(f"{split}/skipped_images", float(skipped))
            log.warning(
                "%s: %d bad samples replaced by their neighbours (see the warnings naming them)", split, skipped
            )

    def _report(self, prefix: str) -> None:
        dataset = self.evaluation_dataset(prefix)
        self.report_skips(dataset, prefix)
        scores = self.evaluation_scores()
        self.log_dict({f"{prefix}/{name}": value for name, value in scores.items() if "/" not in name})
        if self.trainer.state.fn in ("validate", "test") and not self.trainer.sanity_checking:
            self.print(f"\n{prefix} ({self.evaluated_images(dataset)} images)\n{self.format_scores(scores)}")
