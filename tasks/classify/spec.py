"""The classification task, registered by name: its classes, what it exports, and one classifier per backbone,
named as the backbone (`v3_large`), as timm names its classifiers by their network."""

from backbones import list_backbones
from tasks.classify import end_to_end
from tasks.classify.data.module import ClassificationDataModule
from tasks.classify.exported import evaluate_exported, exportable
from tasks.classify.model import build_classifier
from tasks.classify.predictor import Classifier
from tasks.classify.task import ClassificationTask, ClassifyCLI
from tasks.models import register_model
from tasks.registry import TaskSpec, register_task

SPEC = register_task(
    TaskSpec(
        name="classify",
        module=ClassificationTask,
        datamodule=ClassificationDataModule,
        predictor=Classifier,
        cli=ClassifyCLI,
        outputs=("logits",),
        input_size="resolution",
        exportable=exportable,
        evaluate_exported=evaluate_exported,
        end_to_end=end_to_end.end_to_end,
    )
)
for _backbone in list_backbones():
    register_model(_backbone, "classify", build_classifier, num_classes=1000, backbone=_backbone)
