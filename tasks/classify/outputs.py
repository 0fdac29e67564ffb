"""`predict` output for classification: one CSV row per image with its top-5 classes and scores."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import BasePredictionWriter

log = logging.getLogger(__name__)
TOP_K = 5
CSV_NAME = "predictions.csv"


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
        return self.output_dir / CSV_NAME

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        k = min(TOP_K, len(self.class_names))
        header = ["path"] + [f"{field}_{i}" for i in range(1, k + 1) for field in ("class", "score")]
        with self.path.open("w", newline="") as file:
            csv.writer(file).writerow(header)
        self.rows = 0

    def write_on_batch_end(
        self, trainer, pl_module, prediction: list[dict[str, Any]], batch_indices, batch, batch_idx, dataloader_idx
    ) -> None:
        with self.path.open("a", newline="") as file:
            writer = csv.writer(file)
            for item in prediction:
                ranked = [
                    value
                    for label, score in zip(item["labels"], item["scores"], strict=True)
                    for value in (self.class_names[label], f"{score:.6f}")
                ]
                writer.writerow([item["path"], *ranked])
        self.rows += len(prediction)

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        log.info("wrote the top-%d classes of %d images to %s", min(TOP_K, len(self.class_names)), self.rows, self.path)
