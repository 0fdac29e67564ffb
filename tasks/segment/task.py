"""Semantic segmentation with DeepLabV3 or LR-ASPP on any MobileNet: `python -m tasks.segment fit --head lraspp`."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch.nn.functional as F
from matplotlib.figure import Figure
from pytorch_lightning.callbacks import Callback
from torch import Tensor
from torchmetrics.classification import MulticlassConfusionMatrix

from tasks.common import optim
from tasks.common.cli import TaskCLI, run_cli
from tasks.common.plots import input_normalisation, samples_wanted
from tasks.common.task import TaskModule
from tasks.segment.data.module import IGNORE_INDEX
from tasks.segment.metrics import format_iou_table, segmentation_scores
from tasks.segment.model import Head, build_segmenter
from tasks.segment.outputs import SegmentationPredictionWriter
from tasks.segment.plots import SegmentationPlots, plot_samples
from tasks.segment.predictor import masks


class SegmentationTask(TaskModule):
    """Cross-entropy (ignore 255, auxiliary loss weight 0.5), warmup then poly decay; mIoU over the whole set.

    The default optimizer is AdamW (lr 2e-3): in the 4-epoch default run on the embedded data it ends above SGD at
    lr 0.02 on V3-Large and far above it on V4-Conv-M (benchmarks/default_runs.py); the VOC and COCO recipes in
    configs/segment/ use torchvision's SGD.
    """

    task = "segment"
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
        backbone_options: dict[str, Any] | None = None,
        class_names: list[str] | None = None,
        optimizer: optim.Optimizer = "adamw",
        lr: float = 0.002,
        momentum: float = 0.9,
        weight_decay: float = 1e-5,
        warmup_epochs: float = 0.5,
        predict_dir: str = "predictions",
        compile: bool = False,
    ) -> None:
        super().__init__(compile)
        self.predict_dir = predict_dir
        self.confusion = MulticlassConfusionMatrix(num_classes, ignore_index=IGNORE_INDEX)
        self._plot_samples: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # rank 0's first images
        self._plots: SegmentationPlots | None = None  # the last evaluation's, for `validation_figures`

    def build_model(self) -> None:
        names = (
            "backbone",
            "head",
            "num_classes",
            "width",
            "output_stride",
            "aux_loss",
            "weights",
            "backbone_weights",
            "backbone_options",
        )
        self.model = build_segmenter(**self.hparams_for(*names))

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, masks = batch
        outputs = self.training_model(images)
        loss = F.cross_entropy(outputs["out"], masks, ignore_index=IGNORE_INDEX)
        if "aux" in outputs:
            aux = F.cross_entropy(outputs["aux"], masks, ignore_index=IGNORE_INDEX)
            self.log("train/aux_loss", aux, batch_size=len(images))
            loss = loss + self.hparams.aux_weight * aux
        self.log("train/loss", loss, prog_bar=True, batch_size=len(images))
        return loss

    def evaluate_batch(self, batch: tuple[Tensor, Tensor]) -> None:
        images, masks = batch
        predictions = self.inference_model(images).argmax(1)
        self.confusion.update(predictions, masks)
        wanted = samples_wanted(self, len(self._plot_samples))
        if wanted:
            self._plot_samples += plot_samples(images[:wanted], masks, predictions, *input_normalisation(self))

    def evaluation_scores(self) -> dict[str, float]:
        confusion = self.confusion.compute()
        scores = segmentation_scores(confusion, self.class_names)
        self.confusion.reset()
        if self.global_rank == 0:
            self._plots = SegmentationPlots(confusion.cpu().numpy().copy(), self.class_names, self._plot_samples)
        self._plot_samples = []
        return scores

    def validation_figures(self) -> dict[str, Figure]:
        """IoU per class (`class_iou`), the row-normalised confusion matrix (`confusion_matrix`) and image / truth /
        prediction overlays of the first validation images (`val_predictions`)."""
        return self._plots.figures() if self._plots is not None else {}

    def format_scores(self, scores: dict[str, float]) -> str:
        return format_iou_table(scores)

    def predict_step(self, batch: tuple[Tensor, list[dict]], batch_idx: int) -> list[dict[str, Any]]:
        images, metas = batch  # the `Segmenter`'s post-processing: one path for predict and the Python predictor
        found = masks(self.inference_model(images), metas, self.class_names)
        return [{**m, "path": meta["path"]} for m, meta in zip(found, metas, strict=True)]

    def prediction_writer(self) -> Callback:
        return SegmentationPredictionWriter(self.predict_dir, self.class_names)

    def configure_optimizers(self):
        h = self.hparams
        return optim.configure(self, h.optimizer, h.lr, h.momentum, h.weight_decay, h.warmup_epochs, "poly")


class SegmentCLI(TaskCLI):
    max_epochs = 4
    top_level = {"head": (str, "lraspp", "lraspp or deeplabv3")}


def main(args: Any = None) -> Any:
    """`python -m tasks.segment {fit,validate,test,predict,export}`; `args` lets tests drive it in-process."""
    return run_cli("segment", args)
