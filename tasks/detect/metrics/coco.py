"""COCO box mAP through faster-coco-eval's COCOeval (C++, pycocotools' semantics), fed from per-image outputs.

The evaluator only converts and collects: every number comes from ``faster_coco_eval.COCOeval_faster``, whose
stats equal ``pycocotools.cocoeval.COCOeval``'s (the tests hold it to pycocotools to 1e-6 on every stat) at a
fraction of the time. Detections are kept as numpy arrays per batch, and the result annotations that COCOeval
reads are built from them in one vectorised pass, without ``loadRes``'s per-result Python loop.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from faster_coco_eval import COCO as FasterCOCO
from faster_coco_eval import COCOeval_faster
from pycocotools.coco import COCO
from torch import Tensor

logger = logging.getLogger(__name__)

#: Names of ``COCOeval.stats`` for iouType "bbox", in its order (AR by area is at maxDets=100).
COCO_STAT_NAMES: tuple[str, ...] = (
    "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"
)  # fmt: skip


@dataclass
class CocoResults:
    """Detections in COCO's result layout, one row per box: what a results JSON holds, as flat arrays."""

    image_ids: np.ndarray  # (N,) int64
    category_ids: np.ndarray  # (N,) int64, COCO category ids
    boxes: np.ndarray  # (N, 4) float64, xywh in original pixels
    scores: np.ndarray  # (N,) float64

    @classmethod
    def empty(cls) -> CocoResults:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0))

    @classmethod
    def concatenate(cls, parts: Sequence[CocoResults]) -> CocoResults:
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([p.image_ids for p in parts]),
            np.concatenate([p.category_ids for p in parts]),
            np.concatenate([p.boxes for p in parts]),
            np.concatenate([p.scores for p in parts]),
        )

    def __len__(self) -> int:
        return len(self.scores)

    def to_dicts(self) -> list[dict]:
        """``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` per row, as ``COCO.loadRes`` takes."""
        return [
            {"image_id": i, "category_id": c, "bbox": b, "score": s}
            for i, c, b, s in zip(
                self.image_ids.tolist(),
                self.category_ids.tolist(),
                self.boxes.tolist(),
                self.scores.tolist(),
                strict=True,
            )
        ]


@dataclass(frozen=True)
class AccumulatedPrecision:
    """COCOeval's accumulated ``eval["precision"]`` [T, R, K, A, M] with the parameters that index its axes: IoU
    thresholds T, recall thresholds R, category ids K, area ranges A, max detections M. -1 marks a category
    without ground truth in that area range, as in COCOeval."""

    precision: np.ndarray
    iou_thresholds: np.ndarray
    recall_thresholds: np.ndarray
    category_ids: tuple[int, ...]
    area_labels: tuple[str, ...]
    max_dets: tuple[int, ...]

    @classmethod
    def of(cls, coco_eval: Any) -> AccumulatedPrecision:
        """A copy of an accumulated COCOeval's precision array and parameters."""
        params = coco_eval.params
        return cls(
            np.array(coco_eval.eval["precision"], dtype=np.float64),
            np.array(params.iouThrs, dtype=np.float64),
            np.array(params.recThrs, dtype=np.float64),
            tuple(int(c) for c in params.catIds),
            tuple(params.areaRngLbl),
            tuple(int(m) for m in params.maxDets),
        )

    def curves(self, iou: float = 0.5, area: str = "all", max_dets: int = 100) -> np.ndarray:
        """Precision [K, R] at the recall thresholds, one row per category id, at one IoU, area and max_dets."""
        matches = np.flatnonzero(np.isclose(self.iou_thresholds, iou))
        if not len(matches):
            raise ValueError(f"iou={iou} is not one of COCOeval's thresholds {self.iou_thresholds.tolist()}")
        if area not in self.area_labels or max_dets not in self.max_dets:
            raise ValueError(
                f"area={area!r}, max_dets={max_dets}: valid areas {list(self.area_labels)}, "
                f"max_dets {list(self.max_dets)}"
            )
        return self.precision[matches[0], :, :, self.area_labels.index(area), self.max_dets.index(max_dets)].T


def _as_cpu(value: Any, dtype: torch.dtype | None = None) -> Tensor:
    tensor = torch.as_tensor(value).detach()
    return tensor.to("cpu", dtype) if dtype is not None else tensor.to("cpu")


def detections_to_arrays(
    image_ids: Sequence[int],
    detections: Sequence[Mapping[str, Tensor]],
    label_to_category_id: Mapping[int, int],
) -> CocoResults:
    """Turn per-image ``boxes`` (xyxy, original pixels), ``scores``, ``labels`` into flat COCO result arrays.

    Boxes become xywh in float64 (exact for float32 input); contiguous labels 1..K are mapped to (possibly gapped)
    COCO category ids. One concatenation and one conversion per call, not per box.
    """
    if len(image_ids) != len(detections):
        raise ValueError(f"got {len(image_ids)} image_ids but {len(detections)} detections; they must pair up")
    if not detections:
        return CocoResults.empty()
    boxes = [_as_cpu(d["boxes"]).reshape(-1, 4) for d in detections]
    scores = [_as_cpu(d["scores"]).reshape(-1) for d in detections]
    labels = [_as_cpu(d["labels"]).reshape(-1) for d in detections]
    counts = [len(b) for b in boxes]
    for image_id, b, s, lab in zip(image_ids, boxes, scores, labels, strict=True):
        if not len(b) == len(s) == len(lab):
            raise ValueError(
                f"image {int(image_id)}: boxes, scores and labels have lengths {len(b)}, {len(s)}, {len(lab)}; "
                "they must be equal"
            )
    xyxy = torch.cat(boxes).to(torch.float64).numpy()
    label_array = torch.cat(labels).to(torch.int64).numpy()
    row_image_ids = np.repeat(np.asarray([int(i) for i in image_ids], dtype=np.int64), counts)

    known_labels = np.array(sorted(label_to_category_id), dtype=np.int64)
    category_of = np.array([label_to_category_id[k] for k in known_labels.tolist()], dtype=np.int64)
    slot = np.clip(np.searchsorted(known_labels, label_array), 0, max(len(known_labels) - 1, 0))
    valid = known_labels[slot] == label_array if len(known_labels) else np.zeros(len(label_array), bool)
    if not valid.all():
        first = int(np.flatnonzero(~valid)[0])
        raise KeyError(
            f"image {int(row_image_ids[first])}: label {int(label_array[first])} has no COCO category id; "
            f"label_to_category_id knows labels {known_labels.tolist()}"
        )
    xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
    return CocoResults(row_image_ids, category_of[slot], xywh, torch.cat(scores).to(torch.float64).numpy())


def format_table(metrics: Mapping[str, float]) -> str:
    """Render metrics as a two-column aligned text table, for logs and the console."""
    width = max([len("metric"), *(len(name) for name in metrics)])
    lines = [f"{'metric':<{width}}  {'value':>7}", f"{'-' * width}  {'-' * 7}"]
    lines += [f"{name:<{width}}  {value:>7.4f}" for name, value in metrics.items()]
    return "\n".join(lines)


def faster_ground_truth(coco_gt: COCO) -> FasterCOCO:
    """faster-coco-eval's COCO for the box ground truth in ``coco_gt.dataset``, on slim copies of its records.

    Only what box evaluation reads is copied (no polygons), so COCOeval's in-place marks (``ignore``) never touch
    the dataset's own dicts. Annotation ids are renumbered 1..N: faster-coco-eval uses them as match markers, where
    0 means "unmatched", and COCO files with an id 0 exist; the ids are internal to the evaluation.
    """
    dataset = coco_gt.dataset
    images = [
        {"id": int(image["id"]), "width": image.get("width"), "height": image.get("height")}
        for image in dataset.get("images", [])
    ]
    annotations = []
    for number, ann in enumerate(dataset.get("annotations", []), start=1):
        if "area" not in ann or "bbox" not in ann:
            raise KeyError(f"ground-truth annotation {ann.get('id')} has no 'bbox' or 'area'; COCOeval needs both")
        annotations.append(
            {
                "id": number,
                "image_id": int(ann["image_id"]),
                "category_id": ann["category_id"],
                "bbox": ann["bbox"],
                "area": ann["area"],
                "iscrowd": int(ann.get("iscrowd", 0)),
            }
        )
    categories = [{"id": cat["id"], "name": cat.get("name", str(cat["id"]))} for cat in dataset.get("categories", [])]
    return _faster_coco(images, categories, annotations)


def _faster_coco(images: list[dict], categories: list[dict], annotations: list[dict]) -> FasterCOCO:
    coco = FasterCOCO(print_function=_silent)
    coco.dataset = {"images": images, "categories": categories, "annotations": annotations}
    coco.createIndex()
    return coco


def _silent(*_: Any, **__: Any) -> None:
    return None


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while COCOeval's inputs are built.

    Building one dict and list per detection (500,000 on a val2017 pass) sets off a full collection again and
    again, each scanning every object alive: that, not the dicts, was most of the set-up time. The objects made
    here hold no reference cycles, so reference counting frees them all the same.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


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
        self._faster_gt: FasterCOCO | None = None  # built on the first compute, kept across resets
        self.summary = ""
        self.reset()

    def reset(self) -> None:
        """Forget all collected detections and seen images."""
        self._seen: dict[int, None] = {}  # ordered set of image ids
        self._results: list[CocoResults] = []
        self.num_images_evaluated = 0
        self.accumulated: AccumulatedPrecision | None = None  # set by compute(), for PR curves

    def update(self, image_ids: Sequence[int], detections: Sequence[Mapping[str, Tensor]]) -> None:
        """Convert one batch's detections to COCO result arrays and keep them; repeated image ids are skipped."""
        if len(image_ids) != len(detections):
            raise ValueError(f"got {len(image_ids)} image_ids but {len(detections)} detections; they must pair up")
        new_ids: dict[int, None] = {}  # ordered set
        new_detections = []
        for image_id, detection in zip(image_ids, detections, strict=True):
            image_id = int(image_id)
            if image_id in self._seen or image_id in new_ids:
                continue
            if image_id not in self._gt_image_ids:
                raise KeyError(f"image id {image_id} is not in the COCO ground truth")
            new_ids[image_id] = None
            new_detections.append(detection)
        results = detections_to_arrays(list(new_ids), new_detections, self.label_to_category_id)
        self._seen.update(new_ids)  # only a batch that converted cleanly counts as seen
        if len(results):
            self._results.append(results)

    def compute(self) -> dict[str, float]:
        """Run COCOeval on the seen images and return its stats by name; the printed summary goes to ``summary``,
        the accumulated precision array (for PR curves) to ``accumulated``."""
        self.num_images_evaluated = len(self._seen)
        if self.num_images_evaluated < self.num_images_total:
            logger.warning("mAP computed on %d of %d images", self.num_images_evaluated, self.num_images_total)
        if not self._seen:
            # COCOeval reads an empty imgIds as "all images": with nothing seen there is nothing to evaluate.
            self.summary = "no images evaluated"
            self.accumulated = None
            return dict.fromkeys(COCO_STAT_NAMES, 0.0)

        with _gc_paused():
            if self._faster_gt is None:
                self._faster_gt = faster_ground_truth(self.coco_gt)
            coco_eval = COCOeval_faster(self._faster_gt, self._load_results(), iouType="bbox", print_function=_silent)
            coco_eval.params.imgIds = sorted(self._seen)
            coco_eval.evaluate()
            coco_eval.accumulate()
        self.accumulated = AccumulatedPrecision.of(coco_eval)
        lines: list[str] = []
        coco_eval.print_function = lines.append
        coco_eval.summarize()
        self.summary = "\n".join(lines) + "\n"
        return {name: float(value) for name, value in zip(COCO_STAT_NAMES, coco_eval.stats, strict=True)}

    def _load_results(self) -> FasterCOCO:
        """The results as a COCO object, built as ``loadRes`` would for boxes (``area = w * h``, ids 1..N,
        ``iscrowd`` 0), in one pass over flat arrays; no detections gives a results set without annotations."""
        results = CocoResults.concatenate(self._results)
        boxes = results.boxes
        areas = (boxes[:, 2] * boxes[:, 3]).tolist()
        annotations = [
            {"id": n, "image_id": i, "category_id": c, "bbox": b, "score": s, "area": a, "iscrowd": 0}
            for n, i, c, b, s, a in zip(
                range(1, len(results) + 1),
                results.image_ids.tolist(),
                results.category_ids.tolist(),
                boxes.tolist(),
                results.scores.tolist(),
                areas,
                strict=True,
            )
        ]
        gt = self._faster_gt.dataset
        return _faster_coco(list(gt["images"]), list(gt["categories"]), annotations)
