"""Semantic segmentation with DeepLabV3 or LR-ASPP on any MobileNet: `python -m tasks.segment fit --head lraspp`."""

from tasks.segment.model import build_segmenter
from tasks.segment.predictor import Segmenter
from tasks.segment.task import SegmentationTask, main

__all__ = ["SegmentationTask", "Segmenter", "build_segmenter", "main"]
