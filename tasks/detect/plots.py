"""Detection validation plots: precision-recall curves per class at IoU 0.5 (COCOeval's own accumulated precision,
not recomputed), a confusion matrix of matched detections, and validation images drawn with truth and predictions.

The confusion matrix follows Ultralytics' definition: detections scoring >= a threshold are matched one-to-one to
ground-truth boxes at IoU >= 0.5 regardless of class (highest IoU first); a matched pair counts at (true class,
predicted class), an unmatched truth box at (true class, background), an unmatched detection at (background,
predicted class). Ignored boxes (COCO `iscrowd`, VOC `difficult`) are no truth to miss, and a detection on one is
no false positive, as in COCOeval and VOC.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor
from torchvision.ops import box_iou

from tasks.common.drawing import draw_boxes
from tasks.common.images import load_rgb
from tasks.common.plots import confusion_matrix_figure, image_grid_figure, new_figure
from tasks.detect.data.records import DetectionRecord
from tasks.detect.metrics.coco import AccumulatedPrecision

MATCH_IOU = 0.5
#: Classes drawn with a legend entry each; beyond, only the mean curve is named.
LEGEND_CLASSES = 20


def pr_curve_figure(
    accumulated: AccumulatedPrecision, category_names: Mapping[int, str], iou: float = MATCH_IOU
) -> Figure:
    """Precision against recall per category at `iou` (area "all", 100 detections), from COCOeval's array.

    Each curve is labelled with its AP at that IoU (the mean precision over the recall thresholds, as COCOeval
    averages); a category without ground truth among the evaluated images (precision -1) is left out. The thick
    curve is the mean over the categories drawn, whose mean is the mAP at that IoU.
    """
    recall = accumulated.recall_thresholds
    curves = accumulated.curves(iou=iou, area="all", max_dets=max(accumulated.max_dets))
    figure = new_figure(7.0, 5.5)
    axes = figure.add_subplot()
    present = [k for k in range(len(curves)) if (curves[k] > -1).all()]
    for k in present:
        name = category_names.get(accumulated.category_ids[k], str(accumulated.category_ids[k]))
        label = f"{name} {curves[k].mean():.3f}" if len(present) <= LEGEND_CLASSES else None
        axes.plot(recall, curves[k], linewidth=1.0, label=label, gid=f"category_{accumulated.category_ids[k]}")
    if present:
        mean = curves[present].mean(0)
        axes.plot(recall, mean, color="black", linewidth=2.5, label=f"all classes {mean.mean():.3f}", gid="mean")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.set_xlabel("recall")
    axes.set_ylabel("precision")
    axes.set_title(f"precision-recall at IoU {iou:g} (COCOeval, area all)")
    axes.grid(alpha=0.3)
    if present:
        axes.legend(loc="lower left", fontsize=7, title="class AP", title_fontsize=7)
    else:
        axes.text(0.5, 0.5, "no ground truth among the evaluated images", ha="center", va="center")
    return figure


def _greedy_matches(iou: Tensor, threshold: float) -> tuple[list[int], list[int]]:
    """One-to-one (truth, detection) pairs with IoU >= threshold, the highest IoU first."""
    truth, detection = torch.nonzero(iou >= threshold, as_tuple=True)
    order = torch.argsort(iou[truth, detection], descending=True, stable=True)
    used_truth: set[int] = set()
    used_detection: set[int] = set()
    pairs: list[tuple[int, int]] = []
    for t, d in zip(truth[order].tolist(), detection[order].tolist(), strict=True):
        if t not in used_truth and d not in used_detection:
            used_truth.add(t)
            used_detection.add(d)
            pairs.append((t, d))
    return [t for t, _ in pairs], [d for _, d in pairs]


def detection_confusion_matrix(
    ground_truth: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    detections: Sequence[Mapping[str, Tensor]],
    num_classes: int,
    score_threshold: float,
    iou_threshold: float = MATCH_IOU,
) -> np.ndarray:
    """Counts [num_classes, num_classes] (rows: truth, columns: prediction; index 0 is background, labels 1..K).

    `ground_truth` per image: (boxes xyxy [N, 4], labels [N], ignore [N]); `detections` per image: `boxes`,
    `scores`, `labels`, in the same pixels. See the module docstring for the matching.
    """
    if len(ground_truth) != len(detections):
        raise ValueError(f"got {len(ground_truth)} ground-truth entries but {len(detections)} detections")
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    for (boxes, labels, ignore), detection in zip(ground_truth, detections, strict=True):
        ignore = np.asarray(ignore, dtype=bool)
        truth_boxes = torch.as_tensor(np.asarray(boxes)[~ignore], dtype=torch.float64).reshape(-1, 4)
        truth_labels = np.asarray(labels, dtype=np.int64)[~ignore]
        keep = torch.as_tensor(detection["scores"]) >= score_threshold
        detection_boxes = torch.as_tensor(detection["boxes"])[keep].to(torch.float64).reshape(-1, 4)
        detection_labels = torch.as_tensor(detection["labels"])[keep].numpy().astype(np.int64)
        truth, matched = _greedy_matches(box_iou(truth_boxes, detection_boxes), iou_threshold)
        np.add.at(matrix, (truth_labels[truth], detection_labels[matched]), 1)
        missed = np.setdiff1d(np.arange(len(truth_labels)), truth)
        np.add.at(matrix, (truth_labels[missed], 0), 1)
        spare = np.setdiff1d(np.arange(len(detection_labels)), matched)
        if ignore.any() and len(spare):
            ignored_boxes = torch.as_tensor(np.asarray(boxes)[ignore], dtype=torch.float64).reshape(-1, 4)
            on_ignored = (box_iou(detection_boxes[spare], ignored_boxes) >= iou_threshold).any(1).numpy()
            spare = spare[~on_ignored]
        np.add.at(matrix, (0, detection_labels[spare]), 1)
    return matrix


def _drawn(image: np.ndarray, boxes: Tensor, labels: Sequence[int], captions: Sequence[str]) -> np.ndarray:
    """`image` (H, W, 3 uint8) with captioned boxes, lines thicker on larger images; unchanged without boxes."""
    if not len(boxes):
        return image
    pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    width = max(1, round(min(image.shape[:2]) / 160))
    return draw_boxes(pixels, boxes.float().reshape(-1, 4), labels, captions, width).permute(1, 2, 0).numpy()


def drawn_truth(image: np.ndarray, record: DetectionRecord, class_names: Sequence[str]) -> np.ndarray:
    """`image` (original pixels) with the record's boxes (ignored ones too, so marked) and class names."""
    labels = [int(label) for label in record.labels]
    names = [
        class_names[label] + (" (ignored)" if ignored else "")
        for label, ignored in zip(labels, record.ignore.tolist(), strict=True)
    ]
    return _drawn(image, torch.tensor(np.array(record.boxes, dtype=np.float32)), labels, names)


def drawn_detections(
    image: np.ndarray, detection: Mapping[str, Tensor], class_names: Sequence[str], score_threshold: float
) -> np.ndarray:
    """`image` with the detections scoring >= `score_threshold`, captioned "<class> <score>"."""
    keep = detection["scores"] >= score_threshold
    labels, scores = detection["labels"][keep].tolist(), detection["scores"][keep].tolist()
    captions = [f"{class_names[label]} {score:.2f}" for label, score in zip(labels, scores, strict=True)]
    return _drawn(image, detection["boxes"][keep], labels, captions)


def detection_grid_figure(
    samples: Sequence[tuple[DetectionRecord, Mapping[str, Tensor]]], class_names: Sequence[str], score_threshold: float
) -> Figure:
    """Each sample's original image twice, side by side: its ground truth, then its detections >= the threshold;
    two samples per row."""
    panels, titles = [], []
    for record, detection in samples:
        image = load_rgb(record.path)
        shown = int((detection["scores"] >= score_threshold).sum())
        panels.append(drawn_truth(image, record, class_names))
        panels.append(drawn_detections(image, detection, class_names, score_threshold))
        titles += [f"{record.path.name}: truth ({len(record.labels)})", f"predicted ({shown} >= {score_threshold:g})"]
    return image_grid_figure(panels, titles, columns=4)


@dataclass
class DetectionPlots:
    """What the figures of one evaluation pass need: COCOeval's accumulated precision, the confusion counts and
    the first images' records with their detections (original pixels)."""

    accumulated: AccumulatedPrecision | None
    category_names: dict[int, str]
    confusion: np.ndarray
    samples: list[tuple[DetectionRecord, dict[str, Tensor]]]
    class_names: list[str]
    score_threshold: float

    def figures(self) -> dict[str, Figure]:
        figures: dict[str, Figure] = {}
        if self.accumulated is not None:
            figures["pr_curve"] = pr_curve_figure(self.accumulated, self.category_names)
        title = f"detections (score >= {self.score_threshold:g}) matched at IoU >= {MATCH_IOU:g}"
        figures["confusion_matrix"] = confusion_matrix_figure(self.confusion, self.class_names, title)
        if self.samples:
            figures["val_predictions"] = detection_grid_figure(self.samples, self.class_names, self.score_threshold)
        return figures
