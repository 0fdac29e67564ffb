"""SSDLite's post-processing in numpy, for files without NMS (metadata `postprocess.nms == "runner"`).

The same steps as `heads.ssdlite.SSDLite.postprocess` after its softmax and box decoding: per foreground class,
its `candidates_per_class` best default boxes, those scoring > `score_threshold`; class-wise NMS at `iou_threshold`
with torchvision's `nms` arithmetic (float32 IoU, a box suppressed where IoU > threshold); then the best
`max_detections` of all classes, by score, descending. torchvision's `batched_nms` separates classes by shifting
their boxes apart (below 1,000 candidates), whose float32 rounding can tip an IoU lying within ~1e-6 of the
threshold; here each class runs on its own boxes.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes (x1, y1, x2, y2) NMS keeps, best score first, as `torchvision.ops.nms`."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
    areas = (x2 - x1) * (y2 - y1)
    suppressed = np.zeros(len(boxes), dtype=bool)
    keep = []
    for position, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        rest = order[position + 1 :]
        width = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), np.float32(0))
        height = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), np.float32(0))
        inter = width * height
        iou = inter / (areas[i] + areas[rest] - inter)
        # torchvision compares the float IoU with the double threshold
        suppressed[rest] |= iou.astype(np.float64) > float(iou_threshold)
    return np.asarray(keep, dtype=np.int64)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou_threshold: float) -> np.ndarray:
    """NMS within each label; the kept indices of all labels, best score first (`torchvision.ops.batched_nms`)."""
    kept = [
        np.flatnonzero(labels == label)[nms(boxes[labels == label], scores[labels == label], iou_threshold)]
        for label in np.unique(labels)
    ]
    found = np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)
    return found[np.argsort(-scores[found], kind="stable")]


def ssdlite_detections(scores: np.ndarray, boxes: np.ndarray, postprocess: dict[str, Any]) -> dict[str, np.ndarray]:
    """One image's softmax `scores` [A, K] (column 0 background) and `boxes` [A, 4] -> its `boxes` [M, 4], `scores` [M]
    and `labels` [M] (int64, >= 1), best first, with the thresholds and counts of `postprocess`."""
    threshold = postprocess["score_threshold"]
    k = min(int(postprocess["candidates_per_class"]), scores.shape[0])
    foreground = scores[:, 1:].T.astype(np.float32)  # (classes, A)
    best = np.argsort(-foreground, axis=1, kind="stable")[:, :k]  # each class's best default boxes
    best_scores = np.take_along_axis(foreground, best, axis=1)
    labels = np.broadcast_to(np.arange(1, foreground.shape[0] + 1)[:, None], best.shape)
    keep = best_scores > np.float32(threshold)
    candidate_scores, candidate_labels = best_scores[keep], labels[keep]
    candidates = boxes.astype(np.float32)[best[keep]]
    kept = batched_nms(candidates, candidate_scores, candidate_labels, postprocess["iou_threshold"])
    kept = kept[: int(postprocess["max_detections"])]
    return {
        "boxes": candidates[kept],
        "scores": candidate_scores[kept],
        "labels": candidate_labels[kept].astype(np.int64),
    }
