"""Detection metrics: COCO AP (faster-coco-eval, checked against pycocotools) and VOC mAP50."""

from __future__ import annotations

from typing import Any

from tasks.detect.metrics.coco import CocoEvaluator
from tasks.detect.metrics.voc import VocEvaluator


def evaluators_for(dataset: Any, num_classes: int) -> dict[str, Any]:
    """Fresh evaluators for one pass over `dataset`: COCO always, VOC too where the dataset has VOC ground truth.

    Used by the detection task's validation and test and by the int8 figures (`tasks/detect/exported.py`), so both
    score the same way.
    """
    evaluators: dict[str, Any] = {"coco": CocoEvaluator(dataset.coco_gt, dataset.label_to_category_id)}
    voc_ground_truth = getattr(dataset, "voc_ground_truth", None)
    if callable(voc_ground_truth) and voc_ground_truth() is not None:
        evaluators["voc"] = VocEvaluator(voc_ground_truth(), num_classes)
    return evaluators
