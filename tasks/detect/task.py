"""Object detection with SSDLite on any MobileNet: `python -m tasks.detect fit --backbone v3_large`."""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure
from pytorch_lightning.callbacks import Callback
from torch import Tensor

from backbones.weights import WeightsEntry
from tasks.common import optim
from tasks.common.cli import TaskCLI, run_cli
from tasks.common.distributed import gather_objects
from tasks.common.plots import samples_wanted
from tasks.common.task import TaskModule
from tasks.detect.metrics import evaluators_for
from tasks.detect.metrics.coco import format_table
from tasks.detect.model import DEFAULT_IMAGE_SIZE, build_detector, to_original_coordinates
from tasks.detect.outputs import DetectionPredictionWriter
from tasks.detect.plots import DetectionPlots, detection_confusion_matrix
from tasks.detect.predictor import detections


class DetectionTask(TaskModule):
    """SSDLite training and COCO/VOC evaluation, with linear warmup then cosine decay.

    The default optimizer is AdamW (lr 2e-3), which learns within a short from-scratch CPU run where SGD at
    torchvision's settings does not; the COCO recipe in configs/detect/ uses torchvision's SGD. `image_size`, linked
    from the data, is recorded for export.
    """

    task = "detect"
    monitor = "val/AP"
    architecture = ("backbone", "num_classes", "width", "reduced_tail")
    # output settings stay out of the checkpoint: LightningCLI would let a checkpoint's values override them
    ignore = (*TaskModule.ignore, "draw_score_threshold")

    def __init__(
        self,
        backbone: str = "v3_large",
        num_classes: int = 5,
        width: float = 1.0,
        image_size: int = DEFAULT_IMAGE_SIZE,
        reduced_tail: bool = False,
        weights: str | None = None,
        backbone_weights: str | None = None,
        backbone_options: dict[str, Any] | None = None,
        class_names: list[str] | None = None,
        optimizer: optim.Optimizer = "adamw",
        lr: float = 0.002,
        momentum: float = 0.9,
        weight_decay: float = 4e-5,
        warmup_epochs: float = 0.25,
        predict_dir: str = "predictions",
        draw_score_threshold: float = 0.3,
        compile: bool = False,
    ) -> None:
        super().__init__(compile)
        self.predict_dir, self.draw_score_threshold = predict_dir, draw_score_threshold
        self._evaluators: dict[str, Any] = {}
        self._collected: list[tuple[int, dict[str, Tensor]]] = []
        self._evaluation_dataset: Any = None
        self._plot_ids: list[int] = []  # the first images this rank (0 only) evaluates, drawn in the plots
        self._plots: DetectionPlots | None = None  # the last evaluation's, for `validation_figures`

    def build_model(self) -> None:
        names = ("backbone", "num_classes", "width", "reduced_tail", "weights", "backbone_weights", "backbone_options")
        self.model = build_detector(**self.hparams_for(*names))

    def forward(self, images: Tensor) -> list[dict[str, Tensor]]:
        return self.model(images)

    def training_step(self, batch: tuple[Tensor, list[dict]], batch_idx: int) -> Tensor:
        images, targets = batch
        losses = self.training_model(images, targets)
        loss = sum(losses.values())
        self.log_dict({f"train/{name}": value for name, value in losses.items()}, batch_size=len(targets))
        self.log("train/loss", loss, prog_bar=True, batch_size=len(targets))
        return loss

    def on_train_epoch_end(self) -> None:
        self.report_skips(self.trainer.datamodule.train_dataset, "train")

    # evaluation: predictions mapped back to original coordinates, scored against the dataset's own ground truth
    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        self._start_evaluation(self.trainer.datamodule.val_dataset)

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self._start_evaluation(self.trainer.datamodule.test_dataset)

    def _start_evaluation(self, dataset: Any) -> None:
        self._collected, self._plot_ids, self._evaluation_dataset = [], [], dataset
        self._evaluators = evaluators_for(dataset, self.hparams.num_classes)

    def evaluate_batch(self, batch: tuple[Tensor, list[dict]]) -> None:
        images, targets = batch
        detections = to_original_coordinates(
            self.inference_model(images), [t["scale"] for t in targets], [t["orig_size"] for t in targets]
        )
        for target, detection in zip(targets, detections, strict=True):
            self._collected.append((int(target["image_id"]), {k: v.cpu() for k, v in detection.items()}))
        wanted = samples_wanted(self, len(self._plot_ids))
        self._plot_ids += [int(target["image_id"]) for target in targets[:wanted]]

    def evaluation_scores(self) -> dict[str, float]:
        # every rank's detections, in image-id order: the same input to the evaluators as in one process
        collected = sorted(gather_objects(self._collected), key=lambda item: item[0])
        self._collected = []
        for evaluator in self._evaluators.values():
            evaluator.update([image_id for image_id, _ in collected], [detection for _, detection in collected])
        metrics: dict[str, float] = {}
        for evaluator in self._evaluators.values():
            metrics |= evaluator.compute()
        if self.global_rank == 0:
            self._plots = self._evaluation_plots(collected)
        return metrics

    def _evaluation_plots(self, collected: list[tuple[int, dict[str, Tensor]]]) -> DetectionPlots:
        """The plots' state from this pass: COCOeval's accumulated precision, the confusion counts over every
        image evaluated, the first images' records and detections."""
        records = {record.image_id: record for record in self._evaluation_dataset.records}
        by_image = dict(collected)
        truth = [(records[i].boxes, records[i].labels, records[i].ignore) for i in by_image]
        confusion = detection_confusion_matrix(
            truth, list(by_image.values()), self.hparams.num_classes, self.draw_score_threshold
        )
        category_to_label = {c: label for label, c in self._evaluation_dataset.label_to_category_id.items()}
        return DetectionPlots(
            accumulated=self._evaluators["coco"].accumulated,
            category_names={c: self.class_names[label] for c, label in category_to_label.items()},
            confusion=confusion,
            samples=[(records[i], by_image[i]) for i in self._plot_ids],
            class_names=self.class_names,
            score_threshold=self.draw_score_threshold,
        )

    def validation_figures(self) -> dict[str, Figure]:
        """PR curves at IoU 0.5 (`pr_curve`), the confusion matrix of detections scoring >= draw_score_threshold
        (`confusion_matrix`) and the first validation images drawn with truth and detections (`val_predictions`)."""
        return self._plots.figures() if self._plots is not None else {}

    def format_scores(self, scores: dict[str, float]) -> str:
        return format_table(scores)

    def evaluated_images(self, dataset: Any) -> int:
        return self._evaluators["coco"].num_images_evaluated

    def predict_step(self, batch: tuple[Tensor, list[dict]], batch_idx: int) -> list[dict[str, Any]]:
        images, metas = batch  # the `Detector`'s post-processing: one path for predict and the Python predictor
        found = detections(self.inference_model(images), metas, self.class_names)
        return [{**d, "path": m["path"]} for d, m in zip(found, metas, strict=True)]

    def prediction_writer(self) -> Callback:
        return DetectionPredictionWriter(self.predict_dir, self.class_names, self.draw_score_threshold)

    def configure_optimizers(self):
        h = self.hparams
        return optim.configure(self, h.optimizer, h.lr, h.momentum, h.weight_decay, h.warmup_epochs, "cosine")


class DetectCLI(TaskCLI):
    max_epochs = 2
    links = (("data.image_size", "model.image_size"),)

    @staticmethod
    def weights_settings(entry: WeightsEntry) -> dict[str, Any]:
        return {"data.image_size": entry.image_size}


def main(args: Any = None) -> Any:
    """`python -m tasks.detect {fit,validate,test,predict,export}`; `args` lets tests drive it in-process."""
    return run_cli("detect", args)
