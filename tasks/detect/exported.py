"""What a detector exports, and how exported detectors are scored.

SSDLite up to, not including, NMS (`DetectorOutputs`): `scores` [N, A, K], the softmax over all K classes of each
of the A default boxes (column 0 is background), and `boxes` [N, A, 4], the decoded boxes, x1 y1 x2 y2 in input
pixels, clipped to the image. This is the network-only file (`export --end_to_end false`; the end-to-end one adds
the post-processing, `tasks/detect/end_to_end.py`): `detections_from_outputs` turns its two outputs into final
detections with the detector's own post-processing. The decoding sits under the `decode` scope, which int8 keeps in
float (`FLOAT_SCOPES`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from deploy.runtimes import Loaded
from heads.detection_postprocess import unpadded
from heads.ssdlite import SSDLite, decode
from tasks.common.export import resize_images
from tasks.detect.metrics import evaluators_for
from tasks.detect.model import to_original_coordinates

# nodes kept in float by int8: the decoding (see the module docstring); scopes come from the exporter's names
FLOAT_SCOPES = ("/decode/",)


class DetectorOutputs(nn.Module):
    """SSDLite before NMS: softmax scores over all classes and decoded, clipped boxes of every default box.

    The default boxes depend on the input size only; they are computed once here and exported as a constant.
    The decoding sits in the `decode` submodule so that its ONNX nodes are named `/decode/...`.
    """

    def __init__(self, detector: SSDLite, image_size: int) -> None:
        super().__init__()
        self.backbone = detector.backbone
        self.head = detector.head
        training = detector.training
        detector.eval()  # the probe must not move batch-norm statistics
        with torch.no_grad():
            probe = torch.zeros(1, 3, image_size, image_size)
            anchors = detector.anchors(probe, detector.backbone(probe)).clone()
        detector.train(training)
        self.decode = BoxDecoder(detector, anchors, image_size)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        logits, codes = self.head(self.backbone(images))
        return self.decode(logits, codes)


class BoxDecoder(nn.Module):
    """Class logits -> softmax scores; box codes -> boxes with the detector's own BoxCoder, then clipped."""

    def __init__(self, detector: SSDLite, anchors: Tensor, image_size: int) -> None:
        super().__init__()
        self.box_coder = detector.box_coder
        self.register_buffer("anchors", anchors)
        self.image_size = (image_size, image_size)

    def forward(self, logits: Tensor, codes: Tensor) -> tuple[Tensor, Tensor]:
        return decode(self.box_coder, logits, codes, self.anchors, self.image_size)


def detections_from_outputs(detector: SSDLite, scores: Tensor, boxes: Tensor) -> list[dict[str, Tensor]]:
    """Final detections (per image: `boxes`, `scores`, `labels`) from exported `scores` and `boxes`: the detector's
    own post-processing (`SSDLite.detection_postprocess`, its thresholds, top-k, NMS and detection count)."""
    with torch.no_grad():
        return unpadded(*detector.detection_postprocess(torch.as_tensor(scores), torch.as_tensor(boxes)))


def evaluate_detection(
    models: Mapping[str, Loaded],
    loader: Iterable,
    dataset: Any,
    detector: Any,
    size: int,
    num_classes: int,
    outputs: Sequence[str] = ("scores", "boxes"),
) -> dict[str, float]:
    """COCO AP / AP50 (and VOC mAP50 where the dataset has VOC ground truth) of each model over the loader.

    Detections go through `detections_from_outputs` (SSDLite's own postprocess), then to original-image pixels as
    the detection task maps them, into the evaluators the detection task sets up for the dataset.
    """
    evaluators = {name: evaluators_for(dataset, num_classes) for name in models}
    for images, targets in loader:
        to_input = images.shape[-1] / size  # exported-size pixels -> the data's input pixels
        inputs = resize_images(images, size)
        image_ids = [int(t["image_id"]) for t in targets]
        for name, model in models.items():
            found = model.run(inputs)
            if outputs[0] == "detections":  # an end-to-end file's, NMS inside
                detections = unpadded(*found)
            else:
                detections = detections_from_outputs(detector, *found)
            detections = [{**d, "boxes": d["boxes"] * to_input} for d in detections]
            detections = to_original_coordinates(
                detections, [t["scale"] for t in targets], [t["orig_size"] for t in targets]
            )
            for evaluator in evaluators[name].values():
                evaluator.update(image_ids, detections)
    figures = {}
    for name, by_kind in evaluators.items():
        for evaluator in by_kind.values():
            metrics = evaluator.compute()
            figures |= {f"{name}/{k}": v for k, v in metrics.items() if k in ("AP", "AP50", "mAP50")}
    return figures


def evaluate_exported(
    models: Mapping[str, Loaded], datamodule: Any, checkpoint: Any, size: int | None, outputs: Sequence[str]
) -> dict[str, float]:
    """`evaluate_detection` on the data module's val split, with the checkpoint's detector's post-processing."""
    return evaluate_detection(
        models,
        datamodule.val_dataloader(),
        datamodule.val_dataset,
        checkpoint.module.model,
        size,
        checkpoint.hparams["num_classes"],
        outputs,
    )
