"""The end-to-end detector file: uint8 RGB [N, 3, S, S] in; `detections` [N, max_detections, 6] (x1 y1 x2 y2 in
input pixels, score, class index; zero rows after the found ones) and `num_detections` [N] out.

Normalisation, the network, the box decoding and SSDLite's post-processing (`heads.detection_postprocess`: per-class
top-k, score threshold, class-wise NMS as one ONNX `NonMaxSuppression` node, the best `max_detections`) are all in
the graph. Runtimes without an NMS operation (ExecuTorch, LiteRT: `Runtime.nms` is False) get the graph up to the
decoding, `scores` [N, A, K] and `boxes` [N, A, 4], and the metadata says `"nms": "runner"`: `deploy.run` applies the
same post-processing with the thresholds the metadata carries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from backbones.fuse import fuse
from heads.detection_postprocess import DetectionPostprocess
from tasks.common.end_to_end import EndToEnd, Normalize, base_metadata, max_abs_diff, recorded_datamodule
from tasks.common.export import TOLERANCE
from tasks.common.task_checkpoint import TaskCheckpoint
from tasks.detect.exported import DetectorOutputs

# `export`'s detection options: None keeps the trained model's own value
OPTIONS: dict[str, dict[str, Any]] = {
    "score_threshold": {"type": float, "default": None, "help": "keep detections scoring above this (model: 0.001)"},
    "iou_threshold": {"type": float, "default": None, "help": "class-wise NMS IoU threshold (model: 0.55)"},
    "candidates_per_class": {"type": int, "default": None, "help": "best boxes per class before NMS (model: 300)"},
    "max_detections": {"type": int, "default": None, "help": "detections kept per image (model: 300)"},
}
SCORE_TOLERANCE = 1e-4


class EndToEndDetector(nn.Module):
    """Normalise, the fused network, decode, then `postprocess` (None: stop after decoding; see the docstring)."""

    def __init__(self, network: DetectorOutputs, normalize: Normalize, postprocess: DetectionPostprocess | None):
        super().__init__()
        self.normalize = normalize
        self.backbone, self.head, self.decode = network.backbone, network.head, network.decode
        self.postprocess = postprocess

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        logits, codes = self.head(self.backbone(self.normalize(images)))
        scores, boxes = self.decode(logits, codes)
        if self.postprocess is None:
            return scores, boxes
        return self.postprocess(scores, boxes)


def end_to_end(checkpoint: TaskCheckpoint, size: int, nms: bool, **options: Any) -> EndToEnd:
    """The end-to-end detector of `checkpoint` at `size` x `size` (`OPTIONS` override its post-processing)."""
    detector = checkpoint.module.model
    own = detector.detection_postprocess
    settings = {
        "score_threshold": own.score_threshold,
        "iou_threshold": own.iou_threshold,
        "candidates_per_class": own.candidates_per_class,
        "max_detections": own.max_detections,
    } | {name: value for name, value in options.items() if value is not None}
    datamodule = recorded_datamodule(checkpoint)
    mean, std = tuple(datamodule.mean), tuple(datamodule.std)
    network = fuse(DetectorOutputs(detector, size))
    postprocess = DetectionPostprocess(**settings) if nms else None
    module = EndToEndDetector(network, Normalize(mean, std), postprocess).eval()
    outputs = ("detections", "num_detections") if nms else ("scores", "boxes")
    letterbox = bool(datamodule.keep_aspect_ratio)
    resize = {"size": [size, size], "resize": "letterbox" if letterbox else "stretch", "interpolation": "bilinear"}
    if letterbox:
        resize["pad_value"] = [255.0 * m for m in mean]
    metadata = base_metadata(
        checkpoint,
        checkpoint.module.class_names,
        {**resize, "mean": list(mean), "std": list(std)},
        outputs,
        {"nms": "inside" if nms else "runner", **settings},
    )
    category_ids = (checkpoint.datamodule_hyper_parameters or {}).get("category_ids")
    labels = range(1, len(metadata["class_names"]))
    metadata["category_ids"] = [0, *(category_ids if category_ids is not None else labels)]
    if nms:
        compare = compare_detections
    else:
        compare = max_abs_diff(outputs, (TOLERANCE, TOLERANCE * size))
    return EndToEnd(module, outputs, metadata, compare)


def compare_detections(
    got: Sequence[Tensor], want: Sequence[Tensor], size: int
) -> tuple[dict[str, float], dict[str, float]]:
    """The file's detections against PyTorch's, image by image, as sets (rows of near-equal scores may come in
    either order): `num_detections`, the largest count difference; `detections`, the fraction of PyTorch's
    detections the file lacks (same class, score within `SCORE_TOLERANCE`, box within `TOLERANCE` x size)."""
    (got_rows, got_counts), (want_rows, want_counts) = got, want
    missing, total = 0, 0
    for mine, count, theirs, their_count in zip(got_rows, got_counts, want_rows, want_counts, strict=True):
        mine, theirs = mine[: int(count)].double(), theirs[: int(their_count)].double()
        same_class = theirs[:, None, 5] == mine[None, :, 5]
        close_score = (theirs[:, None, 4] - mine[None, :, 4]).abs() <= SCORE_TOLERANCE
        close_box = (theirs[:, None, :4] - mine[None, :, :4]).abs().amax(2) <= TOLERANCE * size
        found = (same_class & close_score & close_box).any(1) if len(mine) else torch.zeros(len(theirs), dtype=bool)
        missing += int((~found).sum())
        total += len(theirs)
    diffs = {
        "detections": missing / max(total, 1),
        "num_detections": float((got_counts.double() - want_counts.double()).abs().max()),
    }
    return diffs, {"detections": 0.0, "num_detections": 0.0}
