"""VocEvaluator against hand-computed precision/recall curves and an independent devkit-style loop."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from tasks.detect.metrics.voc import VocEvaluator


def gt(boxes, labels, difficult=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    difficult = [False] * len(labels) if difficult is None else difficult
    return np.array(boxes, dtype=np.float64).reshape(-1, 4), np.array(labels), np.array(difficult, dtype=bool)


def det(boxes, scores, labels) -> dict[str, torch.Tensor]:
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "scores": torch.tensor(scores, dtype=torch.float32),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }


# One class, three non-difficult boxes; box [20, 20, 40, 40] is never found.
HAND_GT = {
    1: gt([[0, 0, 10, 10], [20, 20, 40, 40]], [1, 1]),
    2: gt([[0, 0, 20, 20]], [1]),
}
# Ranked by score: 0.9 TP, 0.8 FP (duplicate of the 0.9 match, IoU 90/110), 0.7 TP, 0.6 FP (no overlap).
# Given out of order, so that ranking is exercised.
HAND_DETECTIONS = {
    1: det([[1, 0, 11, 10], [0, 0, 10, 10]], [0.8, 0.9], [1, 1]),
    2: det([[50, 50, 60, 60], [0, 0, 20, 20]], [0.6, 0.7], [1, 1]),
}
# recall    = 1/3, 1/3, 2/3, 2/3
# precision = 1,   1/2, 2/3, 1/2
# Envelope (best precision at this or higher recall): 1, 2/3, 2/3, 1/2; recall steps 0->1/3->2/3 (->1 at 0):
#   all-point AP = 1/3 * 1 + 1/3 * 2/3 + 1/3 * 0 = 5/9
# 11-point: recall >= 0, .1, .2, .3 reach precision 1; >= .4, .5, .6 reach 2/3; >= .7 ... 1 nothing:
#   AP = (4 * 1 + 3 * 2/3 + 4 * 0) / 11 = 6/11
HAND_AP = 5 / 9
HAND_AP_07 = 6 / 11


def evaluate(ground_truth, detections, num_classes=2, use_07_metric=False) -> dict[str, float]:
    evaluator = VocEvaluator(ground_truth, num_classes, use_07_metric=use_07_metric)
    evaluator.update(list(detections), list(detections.values()))
    return evaluator.compute()


@pytest.mark.parametrize("use_07_metric, expected", [(False, HAND_AP), (True, HAND_AP_07)])
def test_hand_computed_case(use_07_metric, expected):
    metrics = evaluate(HAND_GT, HAND_DETECTIONS, use_07_metric=use_07_metric)
    assert metrics == pytest.approx({"mAP50": expected, "AP50/1": expected}, abs=1e-12)


@pytest.mark.parametrize("use_07_metric, expected", [(False, HAND_AP), (True, HAND_AP_07)])
def test_detection_of_difficult_box_is_ignored(use_07_metric, expected):
    ground_truth = dict(HAND_GT)
    ground_truth[3] = gt([[100, 100, 150, 150]], [1], [True])
    detections = dict(HAND_DETECTIONS)
    detections[3] = det([[100, 100, 150, 150]], [0.85], [1])  # ranked second; as an FP it would give AP 1/2
    metrics = evaluate(ground_truth, detections, use_07_metric=use_07_metric)
    assert metrics["mAP50"] == pytest.approx(expected, abs=1e-12)


def test_11_point_thresholds_are_exact_tenths():
    # Recall reaches exactly 3/10 with precision 1: thresholds 0, .1, .2, .3 count, so AP = 4/11. Ports that use
    # np.arange(0, 1.1, 0.1) test against 0.30000000000000004 and would give 3/11.
    boxes = [[10 * k, 0, 10 * k + 5, 5] for k in range(10)]
    detections = {1: det(boxes[:3], [0.9, 0.8, 0.7], [1, 1, 1])}
    assert evaluate({1: gt(boxes, [1] * 10)}, detections, use_07_metric=True)["mAP50"] == pytest.approx(4 / 11)


def test_missed_difficult_box_is_not_counted_in_recall():
    ground_truth = {1: gt([[0, 0, 10, 10], [20, 20, 30, 30]], [1, 1], [False, True])}
    assert evaluate(ground_truth, {1: det([[0, 0, 10, 10]], [0.5], [1])})["mAP50"] == 1.0


def test_perfect_predictions():
    ground_truth = {
        1: gt([[0, 0, 10, 10], [5, 5, 50, 40]], [1, 2]),
        2: gt([[3, 4, 30, 40], [0, 0, 5, 5], [60, 60, 90, 99]], [3, 3, 1], [False, False, True]),
    }
    detections = {i: det(boxes[~difficult], [1.0] * int((~difficult).sum()), labels[~difficult])
                  for i, (boxes, labels, difficult) in ground_truth.items()}  # fmt: skip
    for use_07_metric in (False, True):
        metrics = evaluate(ground_truth, detections, num_classes=4, use_07_metric=use_07_metric)
        assert metrics == {"mAP50": 1.0, "AP50/1": 1.0, "AP50/2": 1.0, "AP50/3": 1.0}


def test_no_predictions_gives_zero():
    empty = {i: det([], [], []) for i in HAND_GT}
    assert evaluate(HAND_GT, empty) == {"mAP50": 0.0, "AP50/1": 0.0}


def test_classes_without_ground_truth_are_left_out_of_the_mean():
    ground_truth = {1: gt([[0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 60, 60]], [1, 2, 3], [False, False, True])}
    # Class 1 found (AP 1), class 2 missed (AP 0), class 3 only difficult, class 4 no ground truth at all:
    # the detections of 3 and 4 change nothing and neither class enters the mean.
    detections = {1: det([[0, 0, 10, 10], [50, 50, 60, 60], [0, 0, 5, 5]], [0.9, 0.8, 0.7], [1, 3, 4])}
    assert evaluate(ground_truth, detections, num_classes=5) == {"mAP50": 0.5, "AP50/1": 1.0, "AP50/2": 0.0}


def test_iou_uses_continuous_coordinates_without_plus_one():
    ground_truth = {1: gt([[0, 0, 10, 10]], [1])}
    # IoU exactly 0.5 is a match (>=); with the devkit's +1 pixel, 10 x 4.9 would be 0.54 and match too.
    assert evaluate(ground_truth, {1: det([[0, 0, 10, 5]], [0.5], [1])})["mAP50"] == 1.0
    assert evaluate(ground_truth, {1: det([[0, 0, 10, 4.9]], [0.5], [1])})["mAP50"] == 0.0


def test_repeated_image_ids_keep_first_occurrence():
    evaluator = VocEvaluator(HAND_GT, num_classes=2)
    evaluator.update([1], [HAND_DETECTIONS[1]])
    # Padding repeats image 1 with a different output: it must be dropped, not merged.
    evaluator.update([2, 1], [HAND_DETECTIONS[2], det([[20, 20, 40, 40]], [1.0], [1])])
    assert evaluator.compute()["mAP50"] == pytest.approx(HAND_AP, abs=1e-12)
    assert evaluator.num_images_evaluated == 2


def test_subset_of_images_warns_and_is_restricted(caplog):
    evaluator = VocEvaluator(HAND_GT, num_classes=2)
    evaluator.update([2], [HAND_DETECTIONS[2]])
    with caplog.at_level(logging.WARNING, logger="tasks.detect.metrics.voc"):
        metrics = evaluator.compute()
    assert "mAP computed on 1 of 2 images" in caplog.text
    assert (evaluator.num_images_evaluated, evaluator.num_images_total) == (1, 2)
    assert metrics["mAP50"] == 1.0  # image 2's one box found first; image 1's boxes are not counted as missed


def test_invalid_labels_and_images_are_errors():
    with pytest.raises(ValueError, match="outside 1..1"):
        VocEvaluator({1: gt([[0, 0, 1, 1]], [2])}, num_classes=2)
    evaluator = VocEvaluator(HAND_GT, num_classes=2)
    with pytest.raises(ValueError, match="labels \\[0\\]"):
        evaluator.update([1], [det([[0, 0, 1, 1]], [0.5], [0])])
    with pytest.raises(KeyError, match="image id 7"):
        evaluator.update([7], [det([], [], [])])


# ---------------------------------------------------------------------------------------------------------------
# Independent reference: the devkit's VOCevaldet / VOCap loops, written out plainly (continuous IoU, no +1).


def reference_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    ix1 = np.maximum(boxes[:, 0], box[0])
    iy1 = np.maximum(boxes[:, 1], box[1])
    ix2 = np.minimum(boxes[:, 2], box[2])
    iy2 = np.minimum(boxes[:, 3], box[3])
    inter = np.maximum(ix2 - ix1, 0.0) * np.maximum(iy2 - iy1, 0.0)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / (area + areas - inter)


def reference_ap(rec: np.ndarray, prec: np.ndarray, use_07_metric: bool) -> float:
    if use_07_metric:
        ap = 0.0
        for t in [i / 10 for i in range(11)]:
            p = prec[rec >= t]
            ap += (p.max() if p.size else 0.0) / 11
        return ap
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.concatenate([[0.0], prec, [0.0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    i = np.where(mrec[1:] != mrec[:-1])[0] + 1
    return float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i]))


def reference_voc(ground_truth, detections, num_classes, use_07_metric) -> dict[str, float]:
    result = {}
    for c in range(1, num_classes):
        gt_c = {
            i: (b[lab == c], d[lab == c], np.zeros(int((lab == c).sum()), bool))
            for i, (b, lab, d) in ground_truth.items()
        }
        npos = sum(int((~d).sum()) for _, d, _ in gt_c.values())
        if npos == 0:
            continue
        rows = [
            (s, i, b)
            for i, (bs, ss, ls) in detections.items()
            for b, s, lab in zip(bs, ss, ls, strict=True)
            if lab == c
        ]
        rows.sort(key=lambda row: -row[0])
        tp, fp = np.zeros(len(rows)), np.zeros(len(rows))
        for d, (_, i, box) in enumerate(rows):
            boxes, diff, det_flags = gt_c[i]
            ovmax, jmax = -np.inf, -1
            if len(boxes):
                ov = reference_iou(box, boxes)
                jmax = int(np.argmax(ov))
                ovmax = ov[jmax]
            if ovmax >= 0.5:
                if diff[jmax]:
                    continue  # ignored
                if not det_flags[jmax]:
                    tp[d] = 1
                    det_flags[jmax] = True
                else:
                    fp[d] = 1
            else:
                fp[d] = 1
        keep = (tp + fp) > 0
        tp, fp = np.cumsum(tp[keep]), np.cumsum(fp[keep])
        result[f"AP50/{c}"] = reference_ap(tp / npos, tp / (tp + fp), use_07_metric) if len(tp) else 0.0
    return {"mAP50": float(np.mean(list(result.values()))), **result}


@pytest.mark.parametrize("use_07_metric", [False, True])
def test_agrees_with_reference_on_random_boxes(use_07_metric):
    rng = np.random.default_rng(0)
    num_classes, ground_truth, detections = 5, {}, {}
    for image_id in range(60):
        n = int(rng.integers(0, 6))
        xy = rng.uniform(0, 200, (n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(10, 80, (n, 2))], axis=1)
        labels = rng.integers(1, num_classes, n)
        ground_truth[image_id] = (boxes, labels, rng.random(n) < 0.2)
        # Jittered copies of the ground truth (some relabelled, some twice) plus pure noise.
        copies = np.repeat(np.arange(n), rng.integers(0, 3, n))
        jitter = boxes[copies] + rng.normal(0, 3, (len(copies), 4))
        copy_labels = np.where(rng.random(len(copies)) < 0.15, rng.integers(1, num_classes, len(copies)),
                               labels[copies])  # fmt: skip
        noise_xy = rng.uniform(0, 200, (4, 2))
        noise = np.concatenate([noise_xy, noise_xy + rng.uniform(5, 60, (4, 2))], axis=1)
        boxes_d = np.concatenate([jitter, noise]).astype(np.float32).astype(np.float64)
        labels_d = np.concatenate([copy_labels, rng.integers(1, num_classes, 4)])
        scores_d = rng.random(len(boxes_d)).astype(np.float32).astype(np.float64)
        detections[image_id] = (boxes_d, scores_d, labels_d)
    num_detections = sum(len(s) for _, s, _ in detections.values())
    assert num_detections > 300

    evaluator = VocEvaluator(ground_truth, num_classes, use_07_metric=use_07_metric)
    evaluator.update(list(detections), [det(b, s, lab) for b, s, lab in detections.values()])
    metrics = evaluator.compute()
    expected = reference_voc(ground_truth, detections, num_classes, use_07_metric)
    assert metrics == pytest.approx(expected, abs=1e-12)
    assert 0.1 < metrics["mAP50"] < 0.9  # a mix of hits, misses, duplicates and ignored difficult matches
