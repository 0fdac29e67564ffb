"""Object detection with SSDLite on any MobileNet: `python -m tasks.detect fit --backbone v3_large`."""

from __future__ import annotations

from typing import Any

from pytorch_lightning.callbacks import Callback
from torch import Tensor

from tasks.common import optim
from tasks.common.cli import TaskCLI, run_cli
from tasks.common.distributed import gather_objects
from tasks.common.task import TaskModule
from tasks.detect.data.module import DetectionDataModule
from tasks.detect.metrics import evaluators_for
from tasks.detect.metrics.coco import format_table
from tasks.detect.model import DEFAULT_IMAGE_SIZE, build_detector, to_original_coordinates
from tasks.detect.outputs import DetectionPredictionWriter


class DetectionTask(TaskModule):
    """SSDLite training and COCO/VOC evaluation, with linear warmup then cosine decay.

    The default optimizer is AdamW (lr 2e-3), which learns within a short from-scratch CPU run where SGD at
    torchvision's settings does not; the COCO recipe in configs/detect/ uses torchvision's SGD. `image_size`, linked
    from the data, is recorded for export.
    """

    monitor = "val/AP"
    architecture = ("backbone", "num_classes", "width", "reduced_tail")
    # output settings stay out of the checkpoint: LightningCLI would let a checkpoint's values override them
    ignore = ("predict_dir", "draw_score_threshold")

    def __init__(
        self,
        backbone: str = "v3_large",
        num_classes: int = 5,
        width: float = 1.0,
        image_size: int = DEFAULT_IMAGE_SIZE,
        reduced_tail: bool = False,
        weights: str | None = None,
        backbone_weights: str | None = None,
        class_names: list[str] | None = None,
        optimizer: optim.Optimizer = "adamw",
        lr: float = 0.002,
        momentum: float = 0.9,
        weight_decay: float = 4e-5,
        warmup_epochs: float = 0.5,
        predict_dir: str = "predictions",
        draw_score_threshold: float = 0.3,
    ) -> None:
        super().__init__()
        self.predict_dir, self.draw_score_threshold = predict_dir, draw_score_threshold
        self._evaluators: dict[str, Any] = {}
        self._collected: list[tuple[int, dict[str, Tensor]]] = []

    def build_model(self) -> None:
        names = ("backbone", "num_classes", "width", "reduced_tail", "weights", "backbone_weights")
        self.model = build_detector(**self.hparams_for(*names))

    def forward(self, images: Tensor) -> list[dict[str, Tensor]]:
        return self.model(images)

    def training_step(self, batch: tuple[Tensor, list[dict]], batch_idx: int) -> Tensor:
        images, targets = batch
        losses = self.model(images, targets)
        loss = sum(losses.values())
        self.log_dict({f"train/{name}": value for name, value in losses.items()}, batch_size=len(targets))
        self.log("train/loss", loss, prog_bar=True, batch_size=len(targets))
        return loss

    def on_train_epoch_end(self) -> None:
        self.report_skips(self.trainer.datamodule.train_dataset, "train")

    # evaluation: predictions mapped back to original coordinates, scored against the dataset's own ground truth
    def on_validation_epoch_start(self) -> None:
        self._start_evaluation(self.trainer.datamodule.val_dataset)

    def on_test_epoch_start(self) -> None:
        self._start_evaluation(self.trainer.datamodule.test_dataset)

    def _start_evaluation(self, dataset: Any) -> None:
        self._collected = []
        self._evaluators = evaluators_for(dataset, self.hparams.num_classes)

    def evaluate_batch(self, batch: tuple[Tensor, list[dict]]) -> None:
        images, targets = batch
        detections = to_original_coordinates(
            self.model(images), [t["scale"] for t in targets], [t["orig_size"] for t in targets]
        )
        for target, detection in zip(targets, detections, strict=True):
            self._collected.append((int(target["image_id"]), {k: v.cpu() for k, v in detection.items()}))

    def evaluation_scores(self) -> dict[str, float]:
        # every rank's detections, in image-id order: the same input to the evaluators as in one process
        collected = sorted(gather_objects(self._collected), key=lambda item: item[0])
        self._collected = []
        for evaluator in self._evaluators.values():
            evaluator.update([image_id for image_id, _ in collected], [detection for _, detection in collected])
        metrics: dict[str, float] = {}
        for evaluator in self._evaluators.values():
            metrics |= evaluator.compute()
        return metrics

    def format_scores(self, scores: dict[str, float]) -> str:
        return format_table(scores)

    def evaluated_images(self, dataset: Any) -> int:
        return self._evaluators["coco"].num_images_evaluated

    def predict_step(self, batch: tuple[Tensor, list[dict]], batch_idx: int) -> list[dict[str, Any]]:
        images, metas = batch
        detections = to_original_coordinates(
            self.model(images), [m["scale"] for m in metas], [m["orig_size"] for m in metas]
        )
        return [
            {**{k: v.cpu() for k, v in d.items()}, "path": m["path"]} for d, m in zip(detections, metas, strict=True)
        ]

    def prediction_writer(self) -> Callback:
        return DetectionPredictionWriter(self.predict_dir, self.class_names, self.draw_score_threshold)

    def configure_optimizers(self):
        h = self.hparams
        return optim.configure(self, h.optimizer, h.lr, h.momentum, h.weight_decay, h.warmup_epochs, "cosine")


class DetectCLI(TaskCLI):
    max_epochs = 4
    links = (("data.image_size", "model.image_size"),)


def main(args: Any = None) -> Any:
    """`python -m tasks.detect {fit,validate,test,predict,export}`; `args` lets tests drive it in-process."""
    return run_cli("detect", DetectCLI, DetectionTask, DetectionDataModule, args)
