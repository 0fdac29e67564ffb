"""COCO box mAP on a val2017-sized case: the project's CocoEvaluator against pycocotools and faster-coco-eval.

Makes a seeded synthetic case shaped like val2017 (5,000 images, about 7 boxes each with some crowd regions,
80 categories with COCO's gapped ids, 100 detections per image: jittered copies of the ground truth with right
and wrong classes, plus random boxes) and prints, for each evaluator, the median wall time from the detections to
the 12 COCO stats, and its AP. Every evaluator runs once per round, in a new random order each round
(`benchmarks.timing`), after one untimed warm-up round. The ground truth's index is built before the timer for
every evaluator, as an evaluation during training finds it; each timed run takes the detections from what the
evaluator gets in practice:
  - ours: the per-image tensors of the detector, through ``update`` in batches of 32 and ``compute`` of one
    ``CocoEvaluator`` on the dataset's pycocotools ``COCO``, reset before each run, as a training run keeps it
    across validations: it builds its faster-coco-eval ground truth at its first compute (the warm-up round);
  - pycocotools: a list of COCO result dicts, through the prebuilt ``COCO``'s ``loadRes``, ``COCOeval``'s
    ``evaluate``, ``accumulate`` and ``summarize``;
  - faster-coco-eval: the same result dicts, through the ``loadRes`` of its own prebuilt ``COCO`` and
    ``COCOeval_faster``.
Each reference gets its own copy of the result dicts, made once: ``loadRes`` adds fields to the dicts it is given
(for boxes, a polygon that it skips where one is there already), so every timed run sees the dicts the warm-up
round left, and the references, if anything, do less than a first call would.
Goal (issue 14): ours <= 1.3x faster-coco-eval's time, with every stat equal to pycocotools' to 1e-6.
Usage: python -m benchmarks.coco_eval [--images 5000] [--rounds 5] [--seed 0] [--skip-pycocotools]
"""

from __future__ import annotations

import argparse
import contextlib
import io
from collections.abc import Callable

import numpy as np
import torch
from faster_coco_eval import COCO as FasterCOCO
from faster_coco_eval import COCOeval_faster
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from benchmarks.results import recorded
from benchmarks.timing import interleaved_medians
from tasks.detect.metrics.coco import COCO_STAT_NAMES, CocoEvaluator

#: COCO's 80 category ids: 1..90 with ten gaps.
COCO_CATEGORY_IDS: tuple[int, ...] = tuple(i for i in range(1, 91) if i not in {12, 26, 29, 30, 45, 66, 68, 69, 71, 83})


def make_case(
    num_images: int, seed: int, boxes_per_image: float = 7.3, detections_per_image: int = 100
) -> tuple[dict, list[int], list[dict[str, torch.Tensor]], dict[int, int]]:
    """A seeded val2017-like case: the GT dict, image ids, per-image detector outputs, label -> category id."""
    rng = np.random.default_rng(seed)
    label_to_category_id = {label: c for label, c in enumerate(COCO_CATEGORY_IDS, start=1)}
    images, annotations, outputs = [], [], []
    for image_id in range(1, num_images + 1):
        width, height = int(rng.integers(320, 641)), int(rng.integers(240, 481))
        images.append({"id": image_id, "width": width, "height": height, "file_name": f"{image_id:012d}.jpg"})
        n = int(rng.poisson(boxes_per_image))
        # box sizes log-uniform from 4 to most of the image: small, medium and large areas all occur
        w = np.exp(rng.uniform(np.log(4), np.log(0.9 * width), n))
        h = np.clip(w * np.exp(rng.normal(0, 0.5, n)), 4, 0.9 * height)
        x = rng.uniform(0, width - w)
        y = rng.uniform(0, height - h)
        gt_labels = rng.integers(1, 81, n)
        crowd = rng.random(n) < 0.01
        for k in range(n):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": label_to_category_id[int(gt_labels[k])],
                    "bbox": [float(x[k]), float(y[k]), float(w[k]), float(h[k])],
                    "area": float(w[k] * h[k]),
                    "iscrowd": int(crowd[k]),
                }
            )
        # detections: up to 3 jittered copies per GT box (a fifth with a wrong class), the rest random boxes
        copies = rng.integers(0, 4, n) if n else np.zeros(0, dtype=int)
        source = np.repeat(np.arange(n), copies)[:detections_per_image]
        jitter = rng.normal(0, 0.08, (len(source), 4)) * np.stack([w, h, w, h], 1)[source]
        xyxy_near = np.stack([x, y, x + w, y + h], 1)[source] + jitter
        labels_near = np.where(rng.random(len(source)) < 0.2, rng.integers(1, 81, len(source)), gt_labels[source])
        m = detections_per_image - len(source)
        rw, rh = rng.uniform(4, 0.6 * width, m), rng.uniform(4, 0.6 * height, m)
        rx, ry = rng.uniform(0, width - rw), rng.uniform(0, height - rh)
        xyxy = np.concatenate([xyxy_near, np.stack([rx, ry, rx + rw, ry + rh], 1)])
        xyxy[:, 2:] = np.maximum(xyxy[:, 2:], xyxy[:, :2] + 1)
        labels = np.concatenate([labels_near, rng.integers(1, 81, m)])
        scores = np.concatenate([rng.uniform(0.3, 1.0, len(source)), rng.uniform(0.0, 0.6, m)])
        order = np.argsort(-scores, kind="stable")  # a detector's output is sorted by score
        outputs.append(
            {
                "boxes": torch.from_numpy(xyxy[order]).float(),
                "scores": torch.from_numpy(scores[order]).float(),
                "labels": torch.from_numpy(labels[order]).long(),
            }
        )
    categories = [{"id": c, "name": f"class{c}", "supercategory": "thing"} for c in COCO_CATEGORY_IDS]
    gt = {"images": images, "annotations": annotations, "categories": categories}
    return gt, list(range(1, num_images + 1)), outputs, label_to_category_id


def result_dicts(
    image_ids: list[int], outputs: list[dict[str, torch.Tensor]], label_to_category_id: dict[int, int]
) -> list[dict]:
    """The detections as a COCO results list (what a results JSON holds), from the same float32 values."""
    results = []
    for image_id, output in zip(image_ids, outputs, strict=True):
        boxes = output["boxes"].double()
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1).tolist()
        for box, score, label in zip(xywh, output["scores"].double().tolist(), output["labels"].tolist(), strict=True):
            results.append(
                {"image_id": image_id, "category_id": label_to_category_id[label], "bbox": box, "score": score}
            )
    return results


def run_ours(evaluator: CocoEvaluator, image_ids, outputs, batch_size: int = 32) -> list[float]:
    evaluator.reset()
    for start in range(0, len(image_ids), batch_size):
        evaluator.update(image_ids[start : start + batch_size], outputs[start : start + batch_size])
    return list(evaluator.compute().values())


def run_pycocotools(coco_gt: COCO, results: list[dict]) -> list[float]:
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(results), iouType="bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return [float(v) for v in coco_eval.stats]


def run_faster(coco_gt: FasterCOCO, results: list[dict]) -> list[float]:
    coco_eval = COCOeval_faster(coco_gt, coco_gt.loadRes(results), iouType="bbox", print_function=lambda *a: None)
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    return [float(v) for v in coco_eval.stats]


def recording(
    stats: dict[str, list[float]], name: str, evaluate: Callable[..., list[float]], *args
) -> Callable[[], None]:
    """A runner of `evaluate(*args)` that keeps its latest stats in `stats[name]`."""

    def run() -> None:
        stats[name] = evaluate(*args)

    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5, help="timed runs of each evaluator")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-pycocotools", action="store_true", help="pycocotools takes about a minute a run")
    args = parser.parse_args(argv)

    gt, image_ids, outputs, label_to_category_id = make_case(args.images, args.seed)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        faster_gt = FasterCOCO(gt, print_function=lambda *a: None)
    results = result_dicts(image_ids, outputs, label_to_category_id)
    stats: dict[str, list[float]] = {}
    runners = {
        "faster-coco-eval": recording(stats, "faster-coco-eval", run_faster, faster_gt, [dict(r) for r in results]),
        "ours (CocoEvaluator)": recording(
            stats, "ours (CocoEvaluator)", run_ours, CocoEvaluator(coco_gt, label_to_category_id), image_ids, outputs
        ),
    }
    if not args.skip_pycocotools:
        runners["pycocotools"] = recording(stats, "pycocotools", run_pycocotools, coco_gt, [dict(r) for r in results])
    with recorded(__file__, argv):
        print(
            f"case: {len(gt['images'])} images, {len(gt['annotations'])} boxes "
            f"({sum(a['iscrowd'] for a in gt['annotations'])} crowd), {len(results)} detections, "
            f"{len(gt['categories'])} categories; median of {args.rounds} runs each, in random order after a warm-up "
            "round; ground-truth index built before the timer for every evaluator"
        )
        seconds = interleaved_medians(runners, args.rounds, warmup=1)
        reference = stats.get("pycocotools", stats["faster-coco-eval"])
        print(f"{'evaluator':<22} {'time s':>8} {'x faster-coco-eval':>19} {'AP':>8}  max |stat - reference|")
        for name in runners:
            diff = max(abs(a - b) for a, b in zip(stats[name], reference, strict=True))
            print(
                f"{name:<22} {seconds[name]:>8.2f} {seconds[name] / seconds['faster-coco-eval']:>19.2f} "
                f"{stats[name][0]:>8.4f}  {diff:.1e}"
            )
        print("reference: " + ("pycocotools" if "pycocotools" in stats else "faster-coco-eval"))
        ours = stats["ours (CocoEvaluator)"]
        print("stats (ours): " + ", ".join(f"{n}={v:.4f}" for n, v in zip(COCO_STAT_NAMES, ours, strict=True)))


if __name__ == "__main__":
    main()
