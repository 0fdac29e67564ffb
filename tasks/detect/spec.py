"""The detection task, registered by name: its classes, what it exports, and one SSDLite per backbone
(`ssdlite320_<backbone>`, the names torchvision gives its SSDLite at 320 px)."""

from backbones import list_backbones
from tasks.detect import end_to_end
from tasks.detect.data.module import DetectionDataModule
from tasks.detect.exported import FLOAT_SCOPES, DetectorOutputs, evaluate_exported
from tasks.detect.model import build_detector
from tasks.detect.predictor import Detector
from tasks.detect.task import DetectCLI, DetectionTask
from tasks.models import register_model
from tasks.registry import TaskSpec, register_task

SPEC = register_task(
    TaskSpec(
        name="detect",
        module=DetectionTask,
        datamodule=DetectionDataModule,
        predictor=Detector,
        cli=DetectCLI,
        outputs=("scores", "boxes"),
        input_size="image_size",
        exportable=DetectorOutputs,
        evaluate_exported=evaluate_exported,
        end_to_end=end_to_end.end_to_end,
        float_scopes=FLOAT_SCOPES,
        end_to_end_options=end_to_end.OPTIONS,
    )
)
# where the task's defaults fall short of V3-Large's figure on the embedded data (benchmarks/default_runs.py):
# V4-Conv-S needs 4 epochs, which its twice faster steps fit in V3-Large's time
FIT_DEFAULTS = {"v4_conv_small": {"trainer.max_epochs": 4}}
for _backbone in list_backbones():
    register_model(
        f"ssdlite320_{_backbone}",
        "detect",
        build_detector,
        num_classes=91,
        fit_defaults=FIT_DEFAULTS.get(_backbone),
        backbone=_backbone,
    )
