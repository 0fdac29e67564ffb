"""Semantic segmentation scores from one confusion matrix accumulated over the whole evaluation set."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def segmentation_scores(confusion: Tensor, class_names: Sequence[str] | None = None) -> dict[str, float]:
    """mIoU, pixel accuracy and per-class IoU from a (C, C) matrix of counts (rows: truth, columns: prediction).

    A class absent from both the truth and the predictions has no IoU and is left out of the mean (NaN-mean),
    as mmsegmentation and the Cityscapes scripts do; ignored pixels never enter the matrix.
    """
    confusion = confusion.double()
    true_positive = confusion.diag()
    union = confusion.sum(0) + confusion.sum(1) - true_positive
    iou = true_positive / union  # NaN where union == 0
    total = confusion.sum()
    names = class_names or [str(i) for i in range(len(iou))]
    scores = {
        "mIoU": float(torch.nanmean(iou)) if bool((union > 0).any()) else 0.0,
        "pixel_accuracy": float(true_positive.sum() / total) if total > 0 else 0.0,
    }
    scores |= {f"IoU/{name}": float(value) for name, value in zip(names, iou, strict=True)}
    return scores


def format_iou_table(scores: dict[str, float]) -> str:
    rows = [f"{'class':<16} {'IoU':>7}"]
    rows += [f"{key.removeprefix('IoU/'):<16} {value:>7.4f}" for key, value in scores.items() if key.startswith("IoU/")]
    rows += [f"{'mIoU':<16} {scores['mIoU']:>7.4f}", f"{'pixel accuracy':<16} {scores['pixel_accuracy']:>7.4f}"]
    return "\n".join(rows)
