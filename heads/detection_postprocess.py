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

Outside an export the module calls it as one custom operator (`mobilenet_suite::detection_postprocess`) whose
outputs have those fixed shapes, so `torch.compile` traces a detector without a graph break. Inside, the top-k runs
only over the default boxes that pass the threshold, with k the most passing scores of any (image, class), sizes the
data decides: a top-k over every default box at a static k gives the same detections but took 23 ms at batch 8 (90
classes, 3234 boxes, one thread) where the whole network takes about 40.
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

        # constant shapes, [P, k, 4] and [P, 1, k]: OpenVINO's CPU plugin wants the box size known statically
        boxes = g.op("Reshape", boxes, g.op("Constant", value_t=torch.tensor([0, -1, 4])))
        scores = g.op("Reshape", scores, g.op("Constant", value_t=torch.tensor([0, 1, -1])))
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
        settings = (self.score_threshold, self.iou_threshold, self.candidates_per_class, self.max_detections)
        if torch.onnx.is_in_onnx_export() or torch.jit.is_tracing():
            return postprocess(scores, boxes, *settings)  # the exported file holds the program itself
        return torch.ops.mobilenet_suite.detection_postprocess(scores, boxes, *settings)


@torch.library.custom_op("mobilenet_suite::detection_postprocess", mutates_args=())
def _postprocess_operator(
    scores: Tensor,
    boxes: Tensor,
    score_threshold: float,
    iou_threshold: float,
    candidates_per_class: int,
    max_detections: int,
) -> tuple[Tensor, Tensor]:
    return postprocess(scores, boxes, score_threshold, iou_threshold, candidates_per_class, max_detections)


@_postprocess_operator.register_fake
def _postprocess_shapes(
    scores: Tensor,
    boxes: Tensor,
    score_threshold: float,
    iou_threshold: float,
    candidates_per_class: int,
    max_detections: int,
) -> tuple[Tensor, Tensor]:
    images = scores.shape[0]
    return scores.new_empty(images, max_detections, 6), scores.new_empty(images, dtype=torch.int64)


def postprocess(
    scores: Tensor,
    boxes: Tensor,
    score_threshold: float,
    iou_threshold: float,
    candidates_per_class: int,
    max_detections: int,
) -> tuple[Tensor, Tensor]:
    """`DetectionPostprocess`'s program (see the module docstring)."""
    images, classes = scores.shape[0], scores.shape[2] - 1
    class_scores = scores[:, :, 1:]
    # only default boxes with a score above the threshold, in some image and class, can give a detection: the
    # per-class top-k runs over them alone (a trained detector has a few hundred of its thousands)
    passing = (class_scores.amax(2).amax(0) > score_threshold).nonzero().reshape(-1)
    class_scores, boxes = class_scores.index_select(1, passing), boxes.index_select(1, passing)
    # no (image, class) has more candidates than it has passing scores: the top-k needs no more than the most
    k = _at_most(candidates_per_class, (class_scores > score_threshold).sum(1).amax())
    top_scores, top_anchors = class_scores.transpose(1, 2).topk(k, dim=2)  # [N, C, k]
    candidates = boxes.gather(1, top_anchors.reshape(images, -1, 1).expand(-1, -1, 4))  # [N, C x k, 4]
    # ONNX export writes its NonMaxSuppression (the Function's symbolic); a TorchScript trace scripts the loop
    nms = NonMaxSuppression.apply if torch.onnx.is_in_onnx_export() else _nms_by_image
    kept = nms(
        candidates.reshape(images * classes, -1, 4),
        top_scores.reshape(images * classes, 1, -1),
        classes,
        iou_threshold,
        score_threshold,
    )
    index = kept[:, 0] * top_scores.shape[2] + kept[:, 2]  # into [N, C, k]
    kept_scores = top_scores.reshape(-1).gather(0, index)
    # best first, then each kept detection's rank within its image (a running count per image)
    order = kept_scores.argsort(descending=True)
    index, kept_scores, problem = index.gather(0, order), kept_scores.gather(0, order), kept[:, 0].gather(0, order)
    image = torch.div(problem, classes, rounding_mode="floor")
    label = problem % classes + 1
    ones = (image.unsqueeze(1) == torch.arange(images, device=image.device)).long()  # [M, N]
    rank = ones.cumsum(0).gather(1, image.unsqueeze(1)).squeeze(1) - 1
    chosen = (rank < max_detections).nonzero().reshape(-1)
    rows = torch.cat(
        [
            candidates.reshape(-1, 4).index_select(0, index.index_select(0, chosen)),
            kept_scores.index_select(0, chosen).unsqueeze(1),
            label.index_select(0, chosen).unsqueeze(1).to(scores.dtype),
        ],
        dim=1,
    )
    detections = scores.new_zeros(images, max_detections, 6)
    detections = detections.index_put((image.index_select(0, chosen), rank.index_select(0, chosen)), rows)
    return detections, ones.sum(0).clamp(max=max_detections)


def _at_most(count: int, value: Tensor) -> int:
    """min(count, value), `value` a count the data decides; while tracing, computed in the graph (as torchvision's
    `_topk_min` does for a size)."""
    if not torch.jit.is_tracing():
        return min(count, int(value))
    bound = torch.tensor([count], dtype=value.dtype, device=value.device)
    return torch.min(torch.cat([bound, value.reshape(1)]))  # type: ignore[return-value]


def unpadded(detections: Tensor, num_detections: Tensor) -> list[dict[str, Tensor]]:
    """Per image {boxes, scores, labels} from the padded `detections` and their counts."""
    return [
        {"boxes": rows[:count, :4], "scores": rows[:count, 4], "labels": rows[:count, 5].long()}
        for rows, count in zip(detections, num_detections.tolist(), strict=True)
    ]
