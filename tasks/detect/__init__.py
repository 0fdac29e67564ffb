"""Object detection with SSDLite on any MobileNet: `python -m tasks.detect fit --backbone v3_large`."""

from tasks.detect.model import build_detector
from tasks.detect.predictor import Detector
from tasks.detect.task import DetectionTask, main

__all__ = ["DetectionTask", "Detector", "build_detector", "main"]
