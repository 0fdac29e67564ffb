"""COCO box mAP through pycocotools' own COCOeval, fed from the detector's per-image outputs.

The evaluator only converts and collects: every number comes from ``pycocotools.cocoeval.COCOeval``.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Mapping, Sequence

import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import Tensor

logger = logging.getLogger(__name__)

#: Names of ``COCOeval.stats`` for iouType "bbox", in its order (AR by area is at maxDets=100).
COCO_STAT_NAMES: tuple[str, ...] = (
    "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"
)  # fmt: skip


def detections_to_coco_results(
    image_ids: Sequence[int],
    detections: Sequence[Mapping[str, Tensor]],
    label_to_category_id: Mapping[int, int],
) -> list[dict]:
    """Turn per-image ``boxes`` (xyxy, original pixels), ``scores``, ``labels`` into COCO result dicts.

    Each result is ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``, the format of a COCO results
    JSON and of ``COCO.loadRes``. Contiguous labels 1..K are mapped to (possibly gapped) COCO category ids.
    """
    if len(image_ids) != len(detections):
        raise ValueError(f"got {len(image_ids)} image_ids but {len(detections)} detections; they must pair up")
    results: list[dict] = []
    for image_id, detection in zip(image_ids, detections, strict=True):
        boxes = torch.as_tensor(detection["boxes"]).detach().to("cpu", torch.float64).reshape(-1, 4)
        scores = torch.as_tensor(detection["scores"]).detach().to("cpu", torch.float64).reshape(-1)
        labels = torch.as_tensor(detection["labels"]).detach().to("cpu").reshape(-1)
        if not len(boxes) == len(scores) == len(labels):
            raise ValueError(
                f"image {int(image_id)}: boxes, scores and labels have lengths {len(boxes)}, {len(scores)}, "
                f"{len(labels)}; they must be equal"
            )
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1)
        for box, score, label in zip(xywh.tolist(), scores.tolist(), labels.tolist(), strict=True):
            if label not in label_to_category_id:
                raise KeyError(
                    f"image {int(image_id)}: label {label} has no COCO category id; "
                    f"label_to_category_id knows labels {sorted(label_to_category_id)}"
                )
            results.append(
                {
                    "image_id": int(image_id),
                    "category_id": int(label_to_category_id[label]),
                    "bbox": box,
                    "score": score,
                }
            )
    return results


def format_table(metrics: Mapping[str, float]) -> str:
    """Render metrics as a two-column aligned text table, for logs and the console."""
    width = max([len("metric"), *(len(name) for name in metrics)])
    lines = [f"{'metric':<{width}}  {'value':>7}", f"{'-' * width}  {'-' * 7}"]
    lines += [f"{name:<{width}}  {value:>7.4f}" for name, value in metrics.items()]
    return "\n".join(lines)


class CocoEvaluator:
    """Collect detections over an evaluation pass, then run COCOeval ("bbox") on the images seen.

    Results follow COCOeval exactly: an entry is 0.0 when the area range has ground truth but nothing matched,
    and -1.0 (COCOeval's own marker) when that area range has no ground truth at all among the images seen.
    An image id seen again (a distributed sampler pads its last batch with repeats) is ignored: the first
    occurrence is kept. Evaluation is restricted to the seen images, with a warning when that is fewer than the
    ground truth holds, so that a shortened validation run cannot pass for a full one.
    """

    def __init__(self, coco_gt: COCO, label_to_category_id: Mapping[int, int]) -> None:
        known = set(coco_gt.getCatIds())
        unknown = sorted(set(label_to_category_id.values()) - known)
        if unknown:
            raise ValueError(f"label_to_category_id maps to category ids {unknown} that are not in coco_gt: {known}")
        self.coco_gt = coco_gt
        self.label_to_category_id = dict(label_to_category_id)
        self._gt_image_ids = set(coco_gt.getImgIds())
        self.num_images_total = len(self._gt_image_ids)
        self.summary = ""
        self.reset()

    def reset(self) -> None:
        """Forget all collected detections and seen images."""
        self._seen: dict[int, None] = {}  # ordered set of image ids
        self._results: list[dict] = []
        self.num_images_evaluated = 0

    def update(self, image_ids: Sequence[int], detections: Sequence[Mapping[str, Tensor]]) -> None:
        """Convert one batch's detections to COCO results and keep them; repeated image ids are skipped."""
        if len(image_ids) != len(detections):
            raise ValueError(f"got {len(image_ids)} image_ids but {len(detections)} detections; they must pair up")
        new_ids, new_detections = [], []
        for image_id, detection in zip(image_ids, detections, strict=True):
            image_id = int(image_id)
            if image_id in self._seen:
                continue
            if image_id not in self._gt_image_ids:
                raise KeyError(f"image id {image_id} is not in the COCO ground truth")
            self._seen[image_id] = None
            new_ids.append(image_id)
            new_detections.append(detection)
        self._results += detections_to_coco_results(new_ids, new_detections, self.label_to_category_id)

    def compute(self) -> dict[str, float]:
        """Run COCOeval on the seen images and return its stats by name; the printed summary goes to ``summary``."""
        self.num_images_evaluated = len(self._seen)
        if self.num_images_evaluated < self.num_images_total:
            logger.warning("mAP computed on %d of %d images", self.num_images_evaluated, self.num_images_total)
        if not self._seen:
            # COCOeval reads an empty imgIds as "all images": with nothing seen there is nothing to evaluate.
            self.summary = "no images evaluated"
            return dict.fromkeys(COCO_STAT_NAMES, 0.0)

        quiet = io.StringIO()
        with contextlib.redirect_stdout(quiet):
            coco_dt = self._load_results()
            coco_eval = COCOeval(self.coco_gt, coco_dt, iouType="bbox")
            coco_eval.params.imgIds = sorted(self._seen)
            coco_eval.evaluate()
            coco_eval.accumulate()
        summary = io.StringIO()
        with contextlib.redirect_stdout(summary):
            coco_eval.summarize()
        self.summary = summary.getvalue()
        return {name: float(value) for name, value in zip(COCO_STAT_NAMES, coco_eval.stats, strict=True)}

    def _load_results(self) -> COCO:
        """``coco_gt.loadRes`` on copies of the results; an empty results COCO when there are none.

        ``loadRes`` fails on an empty list, yet "no detections" is a valid outcome (0.0 wherever there is ground
        truth), so that case gets a results set with the ground truth's images and categories and no annotations.
        """
        if self._results:
            return self.coco_gt.loadRes([dict(result) for result in self._results])
        coco_dt = COCO()
        coco_dt.dataset = {
            "images": list(self.coco_gt.dataset["images"]),
            "categories": list(self.coco_gt.dataset["categories"]),
            "annotations": [],
        }
        coco_dt.createIndex()
        return coco_dt
