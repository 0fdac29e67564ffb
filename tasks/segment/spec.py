"""The segmentation task, registered by name: its classes, what it exports, and one model per head and backbone
(`lraspp_<backbone>`, `deeplabv3_<backbone>`, as torchvision names its `lraspp_mobilenet_v3_large`)."""

from typing import get_args

from backbones import list_backbones
from tasks.models import register_model
from tasks.registry import TaskSpec, register_task
from tasks.segment import end_to_end
from tasks.segment.data.module import SegmentationDataModule
from tasks.segment.exported import EXPORT_SIZE, evaluate_exported, exportable
from tasks.segment.model import Head, build_segmenter
from tasks.segment.predictor import Segmenter
from tasks.segment.task import SegmentationTask, SegmentCLI

SPEC = register_task(
    TaskSpec(
        name="segment",
        module=SegmentationTask,
        datamodule=SegmentationDataModule,
        predictor=Segmenter,
        cli=SegmentCLI,
        outputs=("logits",),
        input_size=EXPORT_SIZE,
        exportable=exportable,
        evaluate_exported=evaluate_exported,
        end_to_end=end_to_end.end_to_end,
        end_to_end_options=end_to_end.OPTIONS,
    )
)
for _head in get_args(Head):
    for _backbone in list_backbones():
        register_model(
            f"{_head}_{_backbone}", "segment", build_segmenter, num_classes=21, head=_head, backbone=_backbone
        )
