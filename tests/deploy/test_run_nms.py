"""The runner's numpy SSDLite post-processing (files without NMS) against torchvision's ops on the same outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.ops import batched_nms as torchvision_batched_nms
from torchvision.ops import nms as torchvision_nms

from deploy.run.nms import batched_nms, nms, ssdlite_detections
from heads.detection_postprocess import DetectionPostprocess, unpadded


def clustered_outputs(seed: int, anchors: int = 300, classes: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Softmax scores [A, K] and boxes [A, 4] around a few centres, so that many boxes overlap."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(20, 300, (8, 2))[rng.integers(0, 8, anchors)] + rng.normal(0, 6, (anchors, 2))
    sides = rng.uniform(10, 60, (anchors, 2))
    boxes = np.concatenate([centres - sides / 2, centres + sides / 2], axis=1).astype(np.float32)
    logits = rng.normal(0, 3, (anchors, classes))
    scores = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return scores.astype(np.float32), boxes


def reference(scores: np.ndarray, boxes: np.ndarray, postprocess: dict) -> dict[str, np.ndarray]:
    """SSDLite's post-processing with torchvision's ops (per class top-k, threshold, `batched_nms`, the best)."""
    foreground, boxes_t = torch.from_numpy(scores)[:, 1:], torch.from_numpy(boxes)
    k = min(postprocess["candidates_per_class"], foreground.shape[0])
    top_scores, top_anchors = foreground.t().topk(k, dim=1)
    labels = torch.arange(1, foreground.shape[1] + 1)[:, None].expand_as(top_scores)
    keep = top_scores > postprocess["score_threshold"]
    top_scores, top_anchors, labels = top_scores[keep], top_anchors[keep], labels[keep]
    candidates = boxes_t[top_anchors]
    kept = torchvision_batched_nms(candidates, top_scores, labels, postprocess["iou_threshold"])
    kept = kept[: postprocess["max_detections"]]
    return {"boxes": candidates[kept].numpy(), "scores": top_scores[kept].numpy(), "labels": labels[kept].numpy()}


@pytest.mark.parametrize("seed", range(4))
def test_nms_keeps_what_torchvision_keeps(seed):
    scores, boxes = clustered_outputs(seed)
    for threshold in (0.3, 0.5, 0.7):
        want = torchvision_nms(torch.from_numpy(boxes), torch.from_numpy(scores[:, 1]), threshold).numpy()
        found = nms(boxes, scores[:, 1], threshold)
        assert 10 < len(found) < len(boxes)  # NMS suppressed some, not all
        np.testing.assert_array_equal(found, want)


@pytest.mark.parametrize(
    "postprocess",
    [
        {"score_threshold": 0.01, "iou_threshold": 0.55, "candidates_per_class": 300, "max_detections": 300},
        {"score_threshold": 0.2, "iou_threshold": 0.45, "candidates_per_class": 30, "max_detections": 10},
        {"score_threshold": 0.001, "iou_threshold": 0.6, "candidates_per_class": 1000, "max_detections": 100},
    ],
)
@pytest.mark.parametrize("seed", range(3))
def test_ssdlite_detections_equal_torchvisions(postprocess, seed):
    scores, boxes = clustered_outputs(seed)
    ours, want = ssdlite_detections(scores, boxes, postprocess), reference(scores, boxes, postprocess)
    assert len(want["scores"]) > 5
    assert ours["labels"].dtype == np.int64 and set(ours["labels"].tolist()) <= set(range(1, scores.shape[1]))
    for key in ("labels", "scores", "boxes"):
        np.testing.assert_array_equal(ours[key], want[key], err_msg=key)
    assert (np.diff(ours["scores"]) <= 0).all()  # best first


@pytest.mark.parametrize("seed", range(3))
def test_ssdlite_detections_equal_the_detectors_postprocess(seed):
    """The post-processing the predictors and end-to-end files run (`heads.detection_postprocess`), on a batch."""
    postprocess = {"score_threshold": 0.01, "iou_threshold": 0.55, "candidates_per_class": 100, "max_detections": 50}
    outputs = [clustered_outputs(seed + 10 * i) for i in range(2)]
    scores = torch.from_numpy(np.stack([s for s, _ in outputs]))
    boxes = torch.from_numpy(np.stack([b for _, b in outputs]))
    want = unpadded(*DetectionPostprocess(**postprocess)(scores, boxes))
    for (image_scores, image_boxes), theirs in zip(outputs, want, strict=True):
        ours = ssdlite_detections(image_scores, image_boxes, postprocess)
        assert len(theirs["labels"]) == postprocess["max_detections"]
        for key in ("labels", "scores", "boxes"):
            np.testing.assert_array_equal(ours[key], theirs[key].numpy(), err_msg=key)


def test_batched_nms_keeps_classes_apart():
    """Two identical boxes of different classes both stay; of the same class only the better."""
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], dtype=np.float32)
    scores = np.array([0.9, 0.8, 0.7], dtype=np.float32)
    np.testing.assert_array_equal(batched_nms(boxes, scores, np.array([1, 2, 1]), 0.5), [0, 1])


def test_nothing_above_the_threshold_is_no_detection():
    scores, boxes = clustered_outputs(0)
    found = ssdlite_detections(
        scores,
        boxes,
        {"score_threshold": 0.999999, "iou_threshold": 0.5, "candidates_per_class": 10, "max_detections": 5},
    )
    assert found["boxes"].shape == (0, 4) and found["scores"].shape == (0,) and found["labels"].shape == (0,)
