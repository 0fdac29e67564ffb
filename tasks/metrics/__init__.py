"""Detection metrics: COCO mAP through pycocotools' COCOeval and Pascal VOC mAP@0.5 as the devkit computes it."""

from tasks.metrics.coco import COCO_STAT_NAMES, CocoEvaluator, detections_to_coco_results, format_table
from tasks.metrics.voc import VocEvaluator

__all__ = ["COCO_STAT_NAMES", "CocoEvaluator", "VocEvaluator", "detections_to_coco_results", "format_table"]
