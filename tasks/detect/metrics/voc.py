"""Pascal VOC box mAP@0.5, computed as the VOC devkit's ``VOCevaldet`` / ``VOCap`` do.

Per class: detections over all images are sorted by score (stable sort, so ties keep input order); each one is
compared with the ground truth of that class in its image and assigned to the box of highest IoU. If that IoU is
>= 0.5 the detection is ignored (neither TP nor FP) when the box is "difficult", a TP when the box is not yet
matched, and an FP (duplicate) otherwise; below 0.5 it is an FP. Recall is over the non-difficult ground truth.
AP is the area under the precision envelope at every recall change (VOC2010+), or with ``use_07_metric`` the mean
of the best precision at recall >= 0, 0.1, ..., 1 (VOC2007).

Difference from the devkit, on purpose: boxes here are continuous xyxy coordinates, so IoU uses ``x2 - x1`` as
the width, without the devkit's "+1 pixel" for inclusive integer pixel indices.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import box_iou

logger = logging.getLogger(__name__)

#: IoU a detection needs with a ground-truth box to count as a match (``VOCopts.minoverlap``).
VOC_IOU_THRESHOLD = 0.5

GroundTruth = tuple[np.ndarray, np.ndarray, np.ndarray]


def average_precision(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool = False) -> float:
    """VOC AP from recall/precision at each ranked detection: all-point envelope area, or the 11-point mean."""
    if use_07_metric:
        # Exact tenths i / 10: ports using arange(0, 1.1, 0.1) test 0.30000000000000004 and so on, and differ
        # from this only when a recall lands exactly on such a threshold.
        thresholds = np.arange(11) / 10.0
        return float(
            sum(precision[recall >= t].max() if (recall >= t).any() else 0.0 for t in thresholds) / len(thresholds)
        )
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision envelope: best precision at any higher recall
    changes = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[changes] - mrec[changes - 1]) * mpre[changes]))


class VocEvaluator:
    """Collect detections over an evaluation pass, then compute VOC mAP@0.5 on the images seen.

    ``ground_truth`` maps image id to (boxes float [N, 4] xyxy in original pixels, labels int [N] in 1..K,
    difficult bool [N]); ``num_classes`` counts background, so labels run 1..num_classes-1. ``compute`` returns
    ``mAP50`` and ``AP50/<label>`` for each class that has non-difficult ground truth among the seen images; the
    other classes have no defined recall and, as in the devkit's mean, are left out. With no such class at all
    ``mAP50`` is 0.0 and a warning is logged. Repeated image ids keep their first occurrence, and evaluating fewer
    images than ``ground_truth`` holds logs a warning, as ``CocoEvaluator`` does.
    """

    def __init__(
        self,
        ground_truth: Mapping[int, GroundTruth],
        num_classes: int,
        use_07_metric: bool = False,
    ) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes={num_classes} must count background plus at least one class")
        self.num_classes = num_classes
        self.use_07_metric = use_07_metric
        self.ground_truth: dict[int, GroundTruth] = {}
        for image_id, (boxes, labels, difficult) in ground_truth.items():
            boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
            labels = np.asarray(labels, dtype=np.int64).reshape(-1)
            difficult = np.asarray(difficult, dtype=bool).reshape(-1)
            if not len(boxes) == len(labels) == len(difficult):
                raise ValueError(
                    f"ground_truth[{image_id}]: boxes, labels and difficult have lengths {len(boxes)}, "
                    f"{len(labels)}, {len(difficult)}; they must be equal"
                )
            self._check_labels(labels, f"ground_truth[{image_id}]")
            self.ground_truth[int(image_id)] = (boxes, labels, difficult)
        self.num_images_total = len(self.ground_truth)
        self.reset()

    def reset(self) -> None:
        """Forget all collected detections and seen images."""
        self._detections: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # ordered by first sight
        self.num_images_evaluated = 0

    def update(self, image_ids: Sequence[int], detections: Sequence[Mapping[str, Tensor]]) -> None:
        """Keep one batch's ``boxes`` (xyxy, original pixels), ``scores``, ``labels``; repeated ids are skipped."""
        if len(image_ids) != len(detections):
            raise ValueError(f"got {len(image_ids)} image_ids but {len(detections)} detections; they must pair up")
        for image_id, detection in zip(image_ids, detections, strict=True):
            image_id = int(image_id)
            if image_id in self._detections:
                continue
            if image_id not in self.ground_truth:
                raise KeyError(f"image id {image_id} is not in the VOC ground truth")
            boxes = torch.as_tensor(detection["boxes"]).detach().to("cpu", torch.float64).numpy().reshape(-1, 4)
            scores = torch.as_tensor(detection["scores"]).detach().to("cpu", torch.float64).numpy().reshape(-1)
            labels = torch.as_tensor(detection["labels"]).detach().to("cpu", torch.int64).numpy().reshape(-1)
            if not len(boxes) == len(scores) == len(labels):
                raise ValueError(
                    f"image {image_id}: boxes, scores and labels have lengths {len(boxes)}, {len(scores)}, "
                    f"{len(labels)}; they must be equal"
                )
            self._check_labels(labels, f"detections of image {image_id}")
            self._detections[image_id] = (boxes, scores, labels)

    def compute(self) -> dict[str, float]:
        """Per-class AP@0.5 over the seen images and their mean, as ``{"mAP50", "AP50/<label>", ...}``."""
        self.num_images_evaluated = len(self._detections)
        if self.num_images_evaluated < self.num_images_total:
            logger.warning("mAP computed on %d of %d images", self.num_images_evaluated, self.num_images_total)
        per_class = {}
        for label in range(1, self.num_classes):
            ap = self._class_ap(label)
            if ap is not None:
                per_class[f"AP50/{label}"] = ap
        if not per_class:
            logger.warning("no class has non-difficult ground truth in the %d images seen", self.num_images_evaluated)
        mean = float(np.mean(list(per_class.values()))) if per_class else 0.0
        return {"mAP50": mean, **per_class}

    def _class_ap(self, label: int) -> float | None:
        """AP of one class over the seen images; None when it has no non-difficult ground truth there."""
        num_positives = 0
        image_of, score_of, iou_rows = [], [], []  # one entry per detection of this class
        gt_difficult: dict[int, np.ndarray] = {}
        for image_id, (boxes, scores, labels) in self._detections.items():
            gt_boxes, gt_labels, difficult = self.ground_truth[image_id]
            is_class = gt_labels == label
            gt_difficult[image_id] = difficult[is_class]
            num_positives += int((~difficult[is_class]).sum())
            mine = labels == label
            if not mine.any():
                continue
            ious = box_iou(torch.from_numpy(boxes[mine]), torch.from_numpy(gt_boxes[is_class])).numpy()
            image_of += [image_id] * int(mine.sum())
            score_of.append(scores[mine])
            iou_rows += list(ious)
        if num_positives == 0:
            return None
        if not iou_rows:
            return 0.0

        order = np.argsort(-np.concatenate(score_of), kind="stable")
        matched = {image_id: np.zeros(len(d), dtype=bool) for image_id, d in gt_difficult.items()}
        outcome = np.zeros(len(order), dtype=np.int8)  # 1 TP, -1 FP, 0 ignored (matched a difficult box)
        for rank, index in enumerate(order):
            image_id, ious = image_of[index], iou_rows[index]
            best = int(np.argmax(ious)) if len(ious) else -1
            if best < 0 or ious[best] < VOC_IOU_THRESHOLD:
                outcome[rank] = -1
            elif gt_difficult[image_id][best]:
                outcome[rank] = 0
            elif not matched[image_id][best]:
                matched[image_id][best] = True
                outcome[rank] = 1
            else:
                outcome[rank] = -1
        outcome = outcome[outcome != 0]  # ignored detections add no point to the precision/recall curve
        if len(outcome) == 0:
            return 0.0
        tp = np.cumsum(outcome == 1)
        fp = np.cumsum(outcome == -1)
        return average_precision(tp / num_positives, tp / (tp + fp), self.use_07_metric)

    def _check_labels(self, labels: np.ndarray, where: str) -> None:
        """Labels must be foreground classes 1..num_classes-1."""
        bad = labels[(labels < 1) | (labels >= self.num_classes)]
        if len(bad):
            raise ValueError(
                f"{where}: labels {sorted(set(bad.tolist()))} are outside 1..{self.num_classes - 1} "
                f"(num_classes={self.num_classes} counts background)"
            )
