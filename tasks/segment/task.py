"""Semantic segmentation with DeepLabV3 or LR-ASPP on any MobileNet: `python -m tasks.segment fit --head lraspp`."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from pytorch_lightning.callbacks import Callback
from torch import Tensor
from torchmetrics.classification import MulticlassConfusionMatrix

from tasks.common import optim
from tasks.common.cli import TaskCLI, run_cli
from tasks.common.task import TaskModule
from tasks.segment.data.module import IGNORE_INDEX, SegmentationDataModule
from tasks.segment.metrics import format_iou_table, segmentation_scores
from tasks.segment.model import Head, build_segmenter
from tasks.segment.outputs import SegmentationPredictionWriter


class SegmentationTask(TaskModule):
    """Cross-entropy (ignore 255, auxiliary loss weight 0.5), warmup then poly decay; mIoU over the whole set."""

    monitor = "val/mIoU"
    architecture = ("backbone", "head", "num_classes", "width")

    def __init__(
        self,
        backbone: str = "v3_large",
        head: Head = "lraspp",
        num_classes: int = 5,
        width: float = 1.0,
        output_stride: int = 16,
        aux_loss: bool = False,
        aux_weight: float = 0.5,
        weights: str | None = None,
        backbone_weights: str | None = None,
        class_names: list[str] | None = None,
        optimizer: optim.Optimizer = "sgd",
        lr: float = 0.02,
        momentum: float = 0.9,
        weight_decay: float = 1e-5,
        warmup_epochs: float = 0.5,
        predict_dir: str = "predictions",
    ) -> None:
        super().__init__()
        self.predict_dir = predict_dir
        self.confusion = MulticlassConfusionMatrix(num_classes, ignore_index=IGNORE_INDEX)

    def build_model(self) -> None:
        names = ("backbone", "head", "num_classes", "width", "output_stride", "aux_loss", "weights", "backbone_weights")
        self.model = build_segmenter(**self.hparams_for(*names))

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, masks = batch
        outputs = self.model(images)
        loss = F.cross_entropy(outputs["out"], masks, ignore_index=IGNORE_INDEX)
        if "aux" in outputs:
            aux = F.cross_entropy(outputs["aux"], masks, ignore_index=IGNORE_INDEX)
            self.log("train/aux_loss", aux, batch_size=len(images))
            loss = loss + self.hparams.aux_weight * aux
        self.log("train/loss", loss, prog_bar=True, batch_size=len(images))
        return loss

    def evaluate_batch(self, batch: tuple[Tensor, Tensor]) -> None:
        images, masks = batch
        self.confusion.update(self.model(images).argmax(1), masks)

    def evaluation_scores(self) -> dict[str, float]:
        scores = segmentation_scores(self.confusion.compute(), self.class_names)
        self.confusion.reset()
        return scores

    def format_scores(self, scores: dict[str, float]) -> str:
        return format_iou_table(scores)

    def predict_step(self, batch: tuple[Tensor, list[dict]], batch_idx: int) -> list[dict[str, Any]]:
        images, metas = batch
        labels = self.model(images).argmax(1).cpu()
        return [
            {"path": meta["path"], "mask": mask[: int(meta["orig_size"][0]), : int(meta["orig_size"][1])]}
            for mask, meta in zip(labels, metas, strict=True)
        ]

    def prediction_writer(self) -> Callback:
        return SegmentationPredictionWriter(self.predict_dir, self.class_names)

    def configure_optimizers(self):
        h = self.hparams
        return optim.configure(self, h.optimizer, h.lr, h.momentum, h.weight_decay, h.warmup_epochs, "poly")


class SegmentCLI(TaskCLI):
    max_epochs = 6
    top_level = {"head": (str, "lraspp", "lraspp or deeplabv3")}


def main(args: Any = None) -> Any:
    """`python -m tasks.segment {fit,validate,test,predict,export}`; `args` lets tests drive it in-process."""
    return run_cli("segment", SegmentCLI, SegmentationTask, SegmentationDataModule, args)
