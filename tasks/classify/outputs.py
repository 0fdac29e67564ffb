"""`predict` output for classification: one CSV row per image with its top-5 classes and scores."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import BasePredictionWriter

from deploy.run.results import TOP_K
from deploy.run.writers import PREDICTIONS_CSV, rank_columns, ranked_values

log = logging.getLogger(__name__)


class ClassificationPredictionWriter(BasePredictionWriter):
    """Writes `<dir>/predictions.csv`: path, then class_1, score_1 ... class_k, score_k (k = min(5, classes)).

    Rows are written batch by batch, so a long predict run over a large folder keeps what it has done.
    """

    def __init__(self, output_dir: str, class_names: list[str]) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.class_names = class_names
        self.rows = 0

    @property
    def path(self) -> Path:
        return self.output_dir / PREDICTIONS_CSV

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        header = ["path", *rank_columns(len(self.class_names))]
        with self.path.open("w", newline="") as file:
            csv.writer(file).writerow(header)
        self.rows = 0

    def write_on_batch_end(
        self, trainer, pl_module, prediction: list[dict[str, Any]], batch_indices, batch, batch_idx, dataloader_idx
    ) -> None:
        with self.path.open("a", newline="") as file:
            writer = csv.writer(file)
            for item in prediction:
                writer.writerow([item["path"], *ranked_values(item["labels"], item["scores"], self.class_names)])
        self.rows += len(prediction)

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        log.info("wrote the top-%d classes of %d images to %s", min(TOP_K, len(self.class_names)), self.rows, self.path)
