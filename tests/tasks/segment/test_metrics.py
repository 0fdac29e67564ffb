import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassConfusionMatrix

from tasks.segment.metrics import format_iou_table, segmentation_scores

IGNORE = 255


def numpy_reference(preds: np.ndarray, target: np.ndarray, num_classes: int) -> tuple[float, float, np.ndarray]:
    """A plain confusion-matrix mIoU, as torchvision's segmentation reference computes it."""
    valid = target != IGNORE
    matrix = np.bincount(num_classes * target[valid] + preds[valid], minlength=num_classes**2)
    matrix = matrix.reshape(num_classes, num_classes).astype(np.float64)
    with np.errstate(invalid="ignore"):
        iou = np.diag(matrix) / (matrix.sum(0) + matrix.sum(1) - np.diag(matrix))
    return float(np.nanmean(iou)), float(np.diag(matrix).sum() / matrix.sum()), iou


def confusion_of(preds: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    metric = MulticlassConfusionMatrix(num_classes, ignore_index=IGNORE)
    for p, t in zip(preds, target, strict=True):  # accumulated batch by batch, as over a validation epoch
        metric.update(p[None], t[None])
    return metric.compute()


def test_equals_a_numpy_reference_on_random_masks():
    generator = torch.Generator().manual_seed(0)
    num_classes = 6
    target = torch.randint(0, num_classes, (5, 32, 40), generator=generator)
    target[torch.rand(target.shape, generator=generator) < 0.1] = IGNORE
    target[target == 4] = 3  # class 4 absent from the truth ...
    preds = torch.randint(0, num_classes, target.shape, generator=generator)
    preds[preds == 5] = 0  # ... class 5 absent from the predictions
    scores = segmentation_scores(confusion_of(preds, target, num_classes))
    miou, accuracy, iou = numpy_reference(preds.numpy(), target.numpy(), num_classes)
    assert scores["mIoU"] == pytest.approx(miou, abs=1e-12)
    assert scores["pixel_accuracy"] == pytest.approx(accuracy, abs=1e-12)
    assert [scores[f"IoU/{i}"] for i in range(num_classes)] == pytest.approx(list(iou), abs=1e-12)


def test_perfect_prediction_is_one_and_ignore_does_not_count():
    target = torch.randint(0, 3, (2, 16, 16))
    preds = target.clone()
    target[:, :4] = IGNORE
    preds[:, :4] = 1  # predictions on ignored pixels never count
    scores = segmentation_scores(confusion_of(preds, target, 3), ["background", "a", "b"])
    assert scores["mIoU"] == 1.0 and scores["pixel_accuracy"] == 1.0 and scores["IoU/a"] == 1.0
    assert "mIoU" in format_iou_table(scores) and "background" in format_iou_table(scores)


def test_absent_class_is_left_out_of_the_mean():
    target = torch.zeros(1, 4, 4, dtype=torch.int64)
    scores = segmentation_scores(confusion_of(target.clone(), target, 3))
    assert scores["mIoU"] == 1.0 and np.isnan(scores["IoU/1"])
