"""SSDLite's post-processing for a whole batch in one program: per class the best `candidates_per_class` default
boxes, the score threshold, class-wise NMS, then the best `max_detections` of each image, zero-padded to a fixed
`detections` [N, max_detections, 6] (x1 y1 x2 y2, score, class index) with `num_detections` [N].

It is torchvision's SSD post-processing (`SSD.postprocess_detections`) without its Python loop over classes: the
N x C (image, class) pairs are N x C independent NMS problems. ONNX's `NonMaxSuppression` takes such problems as
its batch dimension, so an exported detector has one NMS node whatever its class count, and a dynamic batch
(torchvision's own export unrolls the loop: a TopK and two NonZero per class, and a fixed batch). In eager mode and
in TorchScript the same problems go to torchvision's `batched_nms`, one image at a time, as torchvision does.
Everything after the NMS has static shapes: the kept scores are scattered back into a dense [N, C x k] tensor whose
top `max_detections` are the detections (kept scores exceed the threshold >= 0; dropped ones are 0).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.ops import batched_nms


@torch.jit.script_if_tracing
def _nms_by_image(boxes: Tensor, scores: Tensor, classes: int, iou_threshold: float, score_threshold: float) -> Tensor:
    problems, _, k = scores.shape
    flat_scores = scores.reshape(problems, k)
    kept = []
    for first in range(0, problems, classes):  # one image: its `classes` problems
        image_scores = flat_scores[first : first + classes].reshape(-1)
        candidates = (image_scores > score_threshold).nonzero().reshape(-1)
        image_boxes = boxes[first : first + classes].reshape(-1, 4)[candidates]
        labels = torch.div(candidates, k, rounding_mode="floor")
        selected = candidates[batched_nms(image_boxes, image_scores[candidates], labels, iou_threshold)]
        problem = first + torch.div(selected, k, rounding_mode="floor")
        kept.append(torch.stack([problem, torch.zeros_like(selected), selected % k], dim=1))
    return torch.cat(kept) if kept else torch.zeros(0, 3, dtype=torch.int64)


class NonMaxSuppression(torch.autograd.Function):
    """Class-wise NMS over (image, class) problems: boxes [P, k, 4], scores [P, 1, k], P = images x `classes` ->
    the kept [M, 3] (problem, 0, box index), as ONNX's NonMaxSuppression gives them (and exports as)."""

    @staticmethod
    def forward(ctx, boxes: Tensor, scores: Tensor, classes: int, iou_threshold: float, score_threshold: float):
        return _nms_by_image(boxes, scores, classes, iou_threshold, score_threshold)

    @staticmethod
    def symbolic(g, boxes, scores, classes: int, iou_threshold: float, score_threshold: float):
        def constant(value: float | int, dtype: torch.dtype):
            return g.op("Constant", value_t=torch.tensor([value], dtype=dtype))

        keep_all = constant(2**31 - 1, torch.int64)  # max_output_boxes_per_class: the top-k already bounds it
        iou = constant(iou_threshold, torch.float32)
        return g.op("NonMaxSuppression", boxes, scores, keep_all, iou, constant(score_threshold, torch.float32))


class DetectionPostprocess(nn.Module):
    """Class scores [N, A, K] (softmax, column 0 the background) and boxes [N, A, 4] of every default box ->
    `detections` [N, max_detections, 6] and `num_detections` [N] (see the module docstring)."""

    def __init__(
        self, score_threshold: float, iou_threshold: float, candidates_per_class: int, max_detections: int
    ) -> None:
        super().__init__()
        if not 0.0 <= score_threshold < 1.0 or not 0.0 <= iou_threshold <= 1.0:
            raise ValueError(
                f"score_threshold must be in [0, 1) and iou_threshold in [0, 1], got {score_threshold} and "
                f"{iou_threshold}"
            )
        if candidates_per_class < 1 or max_detections < 1:
            raise ValueError(
                f"candidates_per_class and max_detections must be >= 1, got {candidates_per_class} and {max_detections}"
            )
        self.score_threshold, self.iou_threshold = score_threshold, iou_threshold
        self.candidates_per_class, self.max_detections = candidates_per_class, max_detections

    def forward(self, scores: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
        images, anchors, classes = scores.shape[0], scores.shape[1], scores.shape[2] - 1
        k = min(self.candidates_per_class, anchors)
        top_scores, top_anchors = scores[:, :, 1:].transpose(1, 2).topk(k, dim=2)  # [N, C, k]
        gather = top_anchors.reshape(images, classes * k, 1).expand(-1, -1, 4)
        candidates = boxes.gather(1, gather)  # [N, C x k, 4]
        # ONNX export writes its NonMaxSuppression (the Function's symbolic); a TorchScript trace scripts the loop
        nms = NonMaxSuppression.apply if torch.onnx.is_in_onnx_export() else _nms_by_image
        kept = nms(
            candidates.reshape(images * classes, k, 4),
            top_scores.reshape(images * classes, 1, k),
            classes,
            self.iou_threshold,
            self.score_threshold,
        )
        index = kept[:, 0] * k + kept[:, 2]
        flat_scores = top_scores.reshape(-1)
        dense = torch.zeros_like(flat_scores).scatter(0, index, flat_scores.gather(0, index))
        count = min(self.max_detections, classes * k)
        best, order = dense.reshape(images, classes * k).topk(count, dim=1)
        found = best > 0
        picked = candidates.gather(1, order.unsqueeze(2).expand(-1, -1, 4))
        labels = torch.div(order, k, rounding_mode="floor") + 1
        detections = torch.cat([picked, best.unsqueeze(2), labels.unsqueeze(2).to(best.dtype)], dim=2)
        detections = detections * found.unsqueeze(2).to(detections.dtype)
        if count < self.max_detections:
            detections = nn.functional.pad(detections, (0, 0, 0, self.max_detections - count))
        return detections, found.sum(1)


def unpadded(detections: Tensor, num_detections: Tensor) -> list[dict[str, Tensor]]:
    """Per image {boxes, scores, labels} from the padded `detections` and their counts."""
    return [
        {"boxes": rows[:count, :4], "scores": rows[:count, 4], "labels": rows[:count, 5].long()}
        for rows, count in zip(detections, num_detections.tolist(), strict=True)
    ]
