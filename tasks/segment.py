"""Semantic segmentation with DeepLabV3 or LR-ASPP on any MobileNet: `python -m tasks.segment fit --head lraspp`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import torch.nn.functional as F
from pytorch_lightning.callbacks import Callback
from torch import Tensor, nn
from torchmetrics.classification import MulticlassConfusionMatrix

from backbones import create_backbone
from backbones.builder import normal_init, set_norm_momentum
from deploy.cli import export_main, is_export
from heads.deeplabv3 import DeepLabV3Head
from heads.lraspp import LRASPPHead
from heads.segmentation import SegmentationModel, load_segmenter_weights
from tasks import optim
from tasks.base import NORM_MOMENTUM, TaskModule
from tasks.cli import TaskCLI, check_checkpoint_matches, run_cli, trainer_defaults
from tasks.data.segmentation import IGNORE_INDEX, SegmentationDataModule
from tasks.metrics.segmentation import format_iou_table, segmentation_scores
from tasks.segmentation_outputs import SegmentationPredictionWriter

log = logging.getLogger(__name__)
Head = Literal["lraspp", "deeplabv3"]


def build_segmenter(
    backbone: str,
    head: Head,
    num_classes: int,
    *,
    width: float = 1.0,
    output_stride: int = 16,
    aux_loss: bool = False,
    weights: str | Path | None = None,
    backbone_weights: str | Path | None = None,
) -> SegmentationModel:
    """DeepLabV3 or LR-ASPP on the backbone's C2 (stride 8) and last maps, as torchvision taps them.

    `weights`: torchvision's `deeplabv3_mobilenet_v3_large` (with or without aux) or `lraspp_mobilenet_v3_large`
    state dict, or one of ours; `backbone_weights`: any checkpoint `backbones.create_backbone` reads.
    """
    if head not in ("lraspp", "deeplabv3"):
        raise ValueError(f"unknown head {head!r}; valid: lraspp, deeplabv3")
    if aux_loss and head != "deeplabv3":
        raise ValueError("aux_loss is an option of the deeplabv3 head (an FCN head on the stride-8 map)")
    features = create_backbone(
        backbone, width=width, out_indices=("c2", -1), output_stride=output_stride, weights=backbone_weights
    )
    if backbone_weights is None:
        normal_init(features)  # from scratch: torchvision's SSDLite start (see normal_init for why)
    set_norm_momentum(features, NORM_MOMENTUM)
    channels = features.feature_info.channels()
    if head == "lraspp":
        decoder: nn.Module = LRASPPHead(channels, num_classes)
    else:
        decoder = DeepLabV3Head(channels, num_classes, aux=aux_loss)
    model = SegmentationModel(features, decoder)
    if weights is not None:
        load_segmenter_weights(model, weights)
    return model


class SegmentationTask(TaskModule):
    """Cross-entropy (ignore 255, auxiliary loss weight 0.5), warmup then poly decay; mIoU over the whole set."""

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
        self.save_hyperparameters(ignore=["predict_dir"])  # an output setting, not part of the model
        self.predict_dir = predict_dir
        self.model = build_segmenter(
            backbone,
            head,
            num_classes,
            width=width,
            output_stride=output_stride,
            aux_loss=aux_loss,
            weights=weights,
            backbone_weights=backbone_weights,
        )
        self.class_names = class_names or ["background", *(f"class_{i}" for i in range(1, num_classes))]
        if len(self.class_names) != num_classes:
            raise ValueError(f"class_names has {len(self.class_names)} entries for num_classes={num_classes}")
        self.confusion = MulticlassConfusionMatrix(num_classes, ignore_index=IGNORE_INDEX)

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

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_checkpoint_matches(self, checkpoint, ("backbone", "head", "num_classes", "width"))


class SegmentCLI(TaskCLI):
    top_level = {"head": (str, "lraspp", "lraspp or deeplabv3")}


def main(args: Any = None):
    """`python -m tasks.segment {fit,validate,test,predict,export}`; `args` lets tests drive it in-process."""
    if is_export(args):
        return export_main("segment", args)
    return run_cli(
        SegmentCLI,
        SegmentationTask,
        SegmentationDataModule,
        args,
        trainer_defaults("val/mIoU", "best-epoch{epoch}-miou{val/mIoU:.3f}", max_epochs=6),
    )


if __name__ == "__main__":
    main()
