"""Image classification on any MobileNet at any width and resolution: `python -m tasks.classify fit --backbone v1`."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from matplotlib.figure import Figure
from pytorch_lightning.callbacks import Callback
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from backbones.weights import WeightsEntry
from deploy.run.results import TOP_K
from tasks.classify.crop import weights_crop_pct
from tasks.classify.data.synthetic import DEFAULT_RESOLUTION
from tasks.classify.ema import EMAWithOwnNormStatistics
from tasks.classify.model import build_classifier, build_mixing
from tasks.classify.outputs import ClassificationPredictionWriter
from tasks.classify.plots import ClassificationPlots, LabelledImage, plot_samples
from tasks.classify.predictor import top_classes
from tasks.common import optim
from tasks.common.cli import TaskCLI, run_cli
from tasks.common.plots import input_normalisation, samples_wanted
from tasks.common.task import TaskModule


class ClassificationTask(TaskModule):
    """Cross-entropy (label smoothing, MixUp/CutMix), warmup then cosine or exponential decay; top-1/top-5.

    The default optimizer is AdamW (lr 3e-3, cosine) for short from-scratch runs on a CPU, with label smoothing 0.1
    (timm's default), which keeps the default run's top-1 steady across CPUs that round differently. The papers'
    RMSprop and SGD recipes are in configs/classify/. `ema_decay` keeps an exponential moving average of the weights
    with batch-norm statistics recomputed for it (tasks/classify/ema.py): validation, the final model and
    checkpoints' `state_dict` use the average.
    `freeze_backbone` trains the head only, with the backbone's batch norms kept in eval mode.
    """

    task = "classify"
    monitor = "val/top1"

    def __init__(
        self,
        backbone: str = "v3_small",
        num_classes: int = 8,
        width: float = 1.0,
        resolution: int = DEFAULT_RESOLUTION,
        dropout: float | None = None,
        weights: str | None = None,
        backbone_options: dict[str, Any] | None = None,
        freeze_backbone: bool = False,
        class_names: list[str] | None = None,
        optimizer: optim.Optimizer = "adamw",
        lr: float = 0.003,
        momentum: float = 0.9,
        weight_decay: float = 0.01,
        warmup_epochs: float = 0.5,
        decay: optim.Decay = "cosine",
        decay_rate: float = 0.98,
        decay_epochs: float = 1.0,
        label_smoothing: float = 0.1,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        ema_decay: float | None = None,
        predict_dir: str = "predictions",
        compile: bool = False,
    ) -> None:
        if ema_decay is not None and not 0 < ema_decay < 1:
            raise ValueError(f"ema_decay must be in (0, 1) or None, got {ema_decay}")
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        super().__init__(compile)
        self.predict_dir = predict_dir
        self.mixing = build_mixing(mixup_alpha, cutmix_alpha, num_classes)
        self.top_k = min(TOP_K, num_classes)
        self.top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.topk = MulticlassAccuracy(num_classes, top_k=self.top_k, average="micro")
        self.confusion = MulticlassConfusionMatrix(num_classes)  # top-1, for the confusion-matrix plot
        self._plot_samples: list[LabelledImage] = []  # rank 0's first images
        self._plots: ClassificationPlots | None = None  # the last evaluation's, for `validation_figures`

    def build_model(self) -> None:
        self.model = build_classifier(
            **self.hparams_for("backbone", "num_classes", "width", "dropout", "weights", "backbone_options")
        )
        if self.hparams.freeze_backbone:
            self.model.backbone.requires_grad_(False)

    def default_class_names(self, num_classes: int) -> list[str]:
        return [f"class_{i}" for i in range(num_classes)]  # no background class

    def train(self, mode: bool = True) -> ClassificationTask:
        super().train(mode)
        if self.hparams.freeze_backbone:
            self.model.backbone.eval()  # frozen statistics too, not only frozen weights
        return self

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels = batch
        targets = labels
        if self.mixing is not None:
            images, targets = self.mixing(images, labels)  # soft targets [B, K]
        loss = F.cross_entropy(self.training_model(images), targets, label_smoothing=self.hparams.label_smoothing)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(images))
        return loss

    def evaluate_batch(self, batch: tuple[Tensor, Tensor]) -> None:
        images, labels = batch
        logits = self.inference_model(images)
        self.top1.update(logits, labels)
        self.topk.update(logits, labels)
        self.confusion.update(logits, labels)
        wanted = samples_wanted(self, len(self._plot_samples))
        if wanted:
            self._plot_samples += plot_samples(images[:wanted], labels, logits, *input_normalisation(self))

    def evaluation_scores(self) -> dict[str, float]:
        scores = {"top1": float(self.top1.compute()), f"top{self.top_k}": float(self.topk.compute())}
        self.top1.reset()
        self.topk.reset()
        confusion = self.confusion.compute()
        self.confusion.reset()
        if self.global_rank == 0:
            self._plots = ClassificationPlots(confusion.cpu().numpy().copy(), self.class_names, self._plot_samples)
        self._plot_samples = []
        return scores

    def validation_figures(self) -> dict[str, Figure]:
        """The top-1 confusion matrix (`confusion_matrix`) and the first validation images with their true and
        predicted classes (`val_predictions`)."""
        return self._plots.figures() if self._plots is not None else {}

    def predict_step(self, batch: tuple[Tensor, list[str]], batch_idx: int) -> list[dict[str, Any]]:
        images, paths = batch  # the `Classifier`'s post-processing: one path for predict and the Python predictor
        found = top_classes(self.inference_model(images), self.top_k, self.class_names)
        return [{**result, "path": path} for result, path in zip(found, paths, strict=True)]

    def prediction_writer(self) -> Callback:
        return ClassificationPredictionWriter(self.predict_dir, self.class_names)

    def configure_callbacks(self) -> list[Callback]:
        callbacks = super().configure_callbacks()
        if self.hparams.ema_decay is not None:
            callbacks.append(EMAWithOwnNormStatistics(self.hparams.ema_decay))
        return callbacks

    def configure_optimizers(self):
        h = self.hparams
        return optim.configure(
            self, h.optimizer, h.lr, h.momentum, h.weight_decay, h.warmup_epochs, h.decay, h.decay_rate, h.decay_epochs
        )


class ClassifyCLI(TaskCLI):
    max_epochs = 12
    top_level = {
        "resolution": (int, DEFAULT_RESOLUTION, "training crop; evaluation resizes to resolution / 0.875, then crops")
    }
    links = (("resolution", "data.resolution"),)

    @staticmethod
    def weights_settings(entry: WeightsEntry) -> dict[str, Any]:
        """The classifier's input size and its crop before it (`crop.weights_crop_pct`)."""
        return {"resolution": entry.image_size, "data.crop_pct": weights_crop_pct(entry)}


def main(args: Any = None) -> Any:
    """`python -m tasks.classify {fit,validate,test,predict,export}`; `args` lets tests drive it in-process."""
    return run_cli("classify", args)
