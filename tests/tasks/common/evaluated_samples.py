"""A callback for the distributed tests: which samples each rank evaluated, written to `<out_dir>/rank<N>.json`.

A detection sample is its `image_id`; a classification or segmentation sample, which carries no id, is a digest of
its image tensor. Given on the command line as `--trainer.callbacks+=tests.tasks.common.evaluated_samples.
RecordEvaluatedSamples --trainer.callbacks.out_dir DIR`, also in `python -m tasks.<task>` subprocesses.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from torch import Tensor


def sample_ids(batch: Any) -> list[int | str]:
    """The batch's samples, in order: detection targets' `image_id`s, else digests of the images."""
    images, targets = batch[0], batch[1]
    if isinstance(targets, list | tuple) and targets and isinstance(targets[0], dict) and "image_id" in targets[0]:
        return [int(target["image_id"]) for target in targets]
    return [image_digest(image) for image in images]


def image_digest(image: Tensor) -> str:
    return hashlib.sha1(image.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


class RecordEvaluatedSamples(Callback):
    """Each rank's validation samples of one pass, in the order it evaluated them."""

    def __init__(self, out_dir: str) -> None:
        super().__init__()
        self.out_dir = Path(out_dir)
        self.seen: list[int | str] = []

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seen = []

    def on_validation_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int, *args: Any
    ) -> None:
        self.seen += sample_ids(batch)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.seen))


def evaluated_samples(out_dir: Path) -> list[list[int | str]]:
    """What `RecordEvaluatedSamples` wrote, one list per rank in rank order."""
    paths = sorted(out_dir.glob("rank*.json"), key=lambda path: int(path.stem.removeprefix("rank")))
    return [json.loads(path.read_text()) for path in paths]
