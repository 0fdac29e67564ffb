"""CocoEvaluator (faster-coco-eval inside) against pycocotools, the reference, on hand-made and random cases.

Every stat must equal pycocotools' to 1e-12: the C++ accumulation adds the same float64 terms as numpy's in another
order (measured differences up to 2.2e-16 on stats of scale 1; thousands of terms bound the order's effect near
1e-12). Our own evaluator given the same detections in another order, or with repeats, gives exactly its own stats.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tasks.detect.metrics.coco import (
    COCO_STAT_NAMES,
    CocoEvaluator,
    detections_to_arrays,
    format_table,
)

TOLERANCE = 1e-12  # on stats in [0, 1] (or -1): float64 sums in another order, see the module docstring

# Gapped category ids, as in COCO itself; the model predicts contiguous labels 1..3.
LABEL_TO_CATEGORY = {1: 1, 2: 7, 3: 90}
CATEGORY_TO_LABEL = {c: label for label, c in LABEL_TO_CATEGORY.items()}

# (image_id, category_id, x, y, w, h, iscrowd): small (< 32^2), medium and large (> 96^2) areas.
GT_BOXES = [
    (1, 1, 10, 10, 20, 20, 0),  # small
    (1, 7, 100, 100, 50, 60, 0),  # medium
    (1, 90, 200, 150, 150, 120, 0),  # large
    (2, 1, 30, 40, 60, 50, 0),  # medium
    (2, 1, 300, 200, 200, 150, 1),  # large crowd region: detections inside are ignored, never FP
    (2, 90, 5, 5, 25, 30, 0),  # small
    (3, 7, 50, 60, 110, 100, 0),  # large
    (3, 7, 400, 300, 40, 40, 0),  # medium
    (4, 90, 20, 20, 16, 16, 0),  # small
]

# (image_id, category_id, x, y, w, h, score): shifted TPs at several IoUs, a duplicate, class confusions, FPs,
# a hit on the crowd region. Coordinates are integers or halves so xywh <-> xyxy is exact in float32.
DETECTIONS = [
    (1, 1, 10, 10, 20, 20, 0.95),  # exact
    (1, 1, 12, 11, 20, 20, 0.40),  # duplicate of the small box
    (1, 7, 104, 102, 50, 60, 0.88),  # IoU ~0.83
    (1, 90, 210, 160, 150, 120, 0.77),  # IoU ~0.77
    (1, 7, 210, 160, 150, 120, 0.30),  # right box, wrong class
    (2, 1, 40, 45, 60, 50, 0.91),  # IoU ~0.6
    (2, 1, 320, 210, 100, 100, 0.85),  # inside the crowd region
    (2, 90, 5.5, 4.5, 25, 30, 0.66),  # near exact
    (2, 7, 500, 400, 30, 30, 0.55),  # FP
    (3, 7, 70, 80, 110, 100, 0.72),  # IoU ~0.53
    (3, 7, 400, 300, 40, 40, 0.35),  # exact, low score
    (3, 1, 0, 0, 10, 10, 0.81),  # FP
    (4, 90, 22, 20, 16, 16, 0.50),  # IoU ~0.78
    (4, 90, 100, 100, 16, 16, 0.60),  # FP ranked above the TP
]

IMAGES = [{"id": i, "width": 640, "height": 480, "file_name": f"{i}.jpg"} for i in (1, 2, 3, 4)]
CATEGORIES = [{"id": c, "name": f"class{c}"} for c in LABEL_TO_CATEGORY.values()]


def gt_json(boxes=GT_BOXES) -> dict:
    annotations = [
        {"id": k + 1, "image_id": i, "category_id": c, "bbox": [x, y, w, h], "area": w * h, "iscrowd": crowd}
        for k, (i, c, x, y, w, h, crowd) in enumerate(boxes)
    ]
    return {"images": IMAGES, "categories": CATEGORIES, "annotations": annotations}


def load_coco(dataset: dict, tmp_path: Path) -> COCO:
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(dataset))
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def detections_to_coco_results(
    image_ids: Sequence[int], detections: Sequence[Mapping[str, torch.Tensor]], label_to_category_id: Mapping[int, int]
) -> list[dict]:
    """Per-image ``boxes`` (xyxy), ``scores``, ``labels`` as COCO result dicts ``{"image_id", "category_id",
    "bbox": [x, y, w, h], "score"}``, one box at a time: the reference that ``detections_to_arrays`` vectorises."""
    results = []
    for image_id, detection in zip(image_ids, detections, strict=True):
        rows = zip(detection["boxes"].tolist(), detection["scores"].tolist(), detection["labels"].tolist(), strict=True)
        for (x1, y1, x2, y2), score, label in rows:
            bbox = [x1, y1, x2 - x1, y2 - y1]
            results.append(
                {"image_id": image_id, "category_id": label_to_category_id[label], "bbox": bbox, "score": score}
            )
    return results


def model_outputs(rows, image_ids) -> list[dict[str, torch.Tensor]]:
    """The detector's view of ``rows``: xyxy float32 boxes and contiguous labels, one dict per image."""
    outputs = []
    for image_id in image_ids:
        mine = [r for r in rows if r[0] == image_id]
        outputs.append(
            {
                "boxes": torch.tensor(
                    [[x, y, x + w, y + h] for _, _, x, y, w, h, _ in mine], dtype=torch.float32
                ).reshape(-1, 4),
                "scores": torch.tensor([s for *_, s in mine], dtype=torch.float32),
                "labels": torch.tensor([CATEGORY_TO_LABEL[c] for _, c, *_ in mine], dtype=torch.int64),
            }
        )
    return outputs


def pycocotools_stats(gt_path: Path, rows, tmp_path: Path, image_ids=None) -> list[float]:
    """Reference: pycocotools alone, on a GT file and a results file written by hand."""
    results = [{"image_id": i, "category_id": c, "bbox": [x, y, w, h], "score": s} for i, c, x, y, w, h, s in rows]
    results_path = tmp_path / "results.json"
    results_path.write_text(json.dumps(results))
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(gt_path))
        coco_eval = COCOeval(coco, coco.loadRes(str(results_path)), iouType="bbox")
        if image_ids is not None:
            coco_eval.params.imgIds = image_ids
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return [float(v) for v in coco_eval.stats]


@pytest.fixture
def coco_gt(tmp_path) -> COCO:
    return load_coco(gt_json(), tmp_path)


def evaluate(coco_gt: COCO, image_ids, rows=DETECTIONS) -> tuple[dict[str, float], CocoEvaluator]:
    evaluator = CocoEvaluator(coco_gt, LABEL_TO_CATEGORY)
    evaluator.update(image_ids, model_outputs(rows, image_ids))
    return evaluator.compute(), evaluator


def test_matches_pycocotools_on_hand_made_case(coco_gt, tmp_path):
    metrics, evaluator = evaluate(coco_gt, [1, 2, 3, 4])
    expected = pycocotools_stats(tmp_path / "gt.json", DETECTIONS, tmp_path)
    assert list(metrics) == list(COCO_STAT_NAMES)
    assert list(metrics.values()) == pytest.approx(expected, abs=TOLERANCE)
    assert 0.0 < metrics["AP"] < metrics["AP50"] < 1.0  # the case is neither trivial nor empty
    assert "Average Precision" in evaluator.summary
    assert evaluator.num_images_evaluated == evaluator.num_images_total == 4


def test_matches_pycocotools_when_batches_split(coco_gt, tmp_path):
    evaluator = CocoEvaluator(coco_gt, LABEL_TO_CATEGORY)
    evaluator.update([3], model_outputs(DETECTIONS, [3]))
    evaluator.update([1, 4, 2], model_outputs(DETECTIONS, [1, 4, 2]))
    expected = pycocotools_stats(tmp_path / "gt.json", DETECTIONS, tmp_path)
    assert list(evaluator.compute().values()) == pytest.approx(expected, abs=TOLERANCE)


def test_perfect_predictions(coco_gt):
    perfect = [(i, c, x, y, w, h, 1.0) for i, c, x, y, w, h, crowd in GT_BOXES if not crowd]
    metrics, _ = evaluate(coco_gt, [1, 2, 3, 4], perfect)
    # pycocotools divides by (tp + fp + eps), so a perfect score can be 1 - 2e-16.
    # AR1 keeps one detection per image and category: image 3 has two boxes of category 7, so that
    # category's recall is 2/3 and the mean over the three categories 8/9.
    expected = dict.fromkeys(COCO_STAT_NAMES, 1.0) | {"AR1": 8 / 9}
    assert metrics == pytest.approx(expected, abs=1e-12)


def test_no_predictions_gives_zeros(coco_gt):
    metrics, evaluator = evaluate(coco_gt, [1, 2, 3, 4], rows=[])
    assert metrics == dict.fromkeys(COCO_STAT_NAMES, 0.0)
    assert "Average Precision" in evaluator.summary


def test_nothing_seen_gives_zeros_and_warns(coco_gt, caplog):
    with caplog.at_level(logging.WARNING, logger="tasks.detect.metrics.coco"):
        metrics = CocoEvaluator(coco_gt, LABEL_TO_CATEGORY).compute()
    assert metrics == dict.fromkeys(COCO_STAT_NAMES, 0.0)
    assert "mAP computed on 0 of 4 images" in caplog.text


def test_area_range_without_ground_truth_is_minus_one(tmp_path):
    large_only = [row for row in GT_BOXES if row[4] * row[5] > 96**2 and not row[6]]
    coco_gt = load_coco(gt_json(large_only), tmp_path)
    metrics, _ = evaluate(coco_gt, [1, 2, 3, 4])
    assert metrics["APs"] == metrics["APm"] == -1.0
    assert metrics["APl"] > 0.0


def test_repeated_image_ids_keep_first_occurrence(coco_gt):
    reference, _ = evaluate(coco_gt, [1, 2, 3, 4])
    evaluator = CocoEvaluator(coco_gt, LABEL_TO_CATEGORY)
    evaluator.update([1, 2, 3], model_outputs(DETECTIONS, [1, 2, 3]))
    # A padded last batch repeats images 1 and 2, here with different (empty / perfect) outputs to prove they
    # are dropped rather than merged.
    padding = model_outputs([], [1]) + model_outputs([(2, 1, 30, 40, 60, 50, 1.0)], [2])
    evaluator.update([4, 1, 2], model_outputs(DETECTIONS, [4]) + padding)
    assert evaluator.compute() == reference
    assert evaluator.num_images_evaluated == 4


def test_subset_of_images_warns_and_is_restricted(coco_gt, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="tasks.detect.metrics.coco"):
        metrics, evaluator = evaluate(coco_gt, [1, 3])
    assert "mAP computed on 2 of 4 images" in caplog.text
    assert (evaluator.num_images_evaluated, evaluator.num_images_total) == (2, 4)
    seen_rows = [row for row in DETECTIONS if row[0] in (1, 3)]
    expected = pycocotools_stats(tmp_path / "gt.json", seen_rows, tmp_path, image_ids=[1, 3])
    assert list(metrics.values()) == pytest.approx(expected, abs=TOLERANCE)
    # Restricting matters: the unseen images' ground truth would otherwise count as missed.
    unrestricted = pycocotools_stats(tmp_path / "gt.json", seen_rows, tmp_path)
    assert list(metrics.values()) != pytest.approx(unrestricted, abs=TOLERANCE)


def test_reset_forgets_everything(coco_gt):
    evaluator = CocoEvaluator(coco_gt, LABEL_TO_CATEGORY)
    evaluator.update([1], model_outputs(DETECTIONS, [1]))
    evaluator.reset()
    evaluator.update([1, 2, 3, 4], model_outputs([], [1, 2, 3, 4]))
    assert evaluator.compute() == dict.fromkeys(COCO_STAT_NAMES, 0.0)


def test_detections_to_coco_results_converts_boxes_and_labels():
    detection = {
        "boxes": torch.tensor([[10.0, 20.0, 40.0, 60.0], [0.5, 1.5, 2.5, 4.0]]),
        "scores": torch.tensor([0.5, 0.25]),
        "labels": torch.tensor([3, 2]),
    }
    assert detections_to_coco_results([42], [detection], LABEL_TO_CATEGORY) == [
        {"image_id": 42, "category_id": 90, "bbox": [10.0, 20.0, 30.0, 40.0], "score": 0.5},
        {"image_id": 42, "category_id": 7, "bbox": [0.5, 1.5, 2.0, 2.5], "score": 0.25},
    ]


def test_unknown_label_and_image_are_errors(coco_gt):
    evaluator = CocoEvaluator(coco_gt, LABEL_TO_CATEGORY)
    bad_label = {"boxes": torch.zeros(1, 4), "scores": torch.ones(1), "labels": torch.tensor([4])}
    with pytest.raises(KeyError, match="label 4"):
        evaluator.update([1], [bad_label])
    with pytest.raises(KeyError, match="image id 99"):
        evaluator.update([99], model_outputs([], [99]))
    with pytest.raises(ValueError, match="category ids \\[5\\]"):
        CocoEvaluator(coco_gt, {1: 5})


def test_format_table_aligns_names_and_values():
    table = format_table({"AP": 0.5, "AP50": 0.75, "AR100": -1.0})
    assert table.splitlines() == [
        "metric    value",
        "------  -------",
        "AP       0.5000",
        "AP50     0.7500",
        "AR100   -1.0000",
    ]


def test_detections_to_arrays_is_the_dicts_as_columns():
    outputs = model_outputs(DETECTIONS, [1, 2, 3, 4])
    arrays = detections_to_arrays([1, 2, 3, 4], outputs, LABEL_TO_CATEGORY)
    assert arrays.to_dicts() == detections_to_coco_results([1, 2, 3, 4], outputs, LABEL_TO_CATEGORY)
    assert arrays.image_ids.tolist() == [row[0] for row in DETECTIONS]
    assert arrays.category_ids.tolist() == [row[1] for row in DETECTIONS]
    assert arrays.boxes.tolist() == [list(row[2:6]) for row in DETECTIONS]  # exact: integers and halves
    assert len(detections_to_arrays([], [], LABEL_TO_CATEGORY)) == 0


def test_mismatched_lengths_are_errors(coco_gt):
    bad = {"boxes": torch.zeros(2, 4), "scores": torch.ones(1), "labels": torch.ones(2, dtype=torch.int64)}
    with pytest.raises(ValueError, match="image 1: boxes, scores and labels have lengths 2, 1, 2"):
        CocoEvaluator(coco_gt, LABEL_TO_CATEGORY).update([1], [bad])
    with pytest.raises(ValueError, match="got 2 image_ids but 1 detections"):
        CocoEvaluator(coco_gt, LABEL_TO_CATEGORY).update([1, 2], [bad])


def test_a_failed_batch_does_not_count_as_seen(coco_gt):
    evaluator = CocoEvaluator(coco_gt, LABEL_TO_CATEGORY)
    bad_label = {"boxes": torch.zeros(1, 4), "scores": torch.ones(1), "labels": torch.tensor([4])}
    with pytest.raises(KeyError):
        evaluator.update([1], [bad_label])
    evaluator.update([1, 2, 3, 4], model_outputs(DETECTIONS, [1, 2, 3, 4]))
    assert evaluator.compute() == evaluate(coco_gt, [1, 2, 3, 4])[0]


def test_ground_truth_dicts_are_left_untouched(coco_gt):
    before = json.dumps(coco_gt.dataset, sort_keys=True)
    evaluate(coco_gt, [1, 2, 3, 4])
    assert json.dumps(coco_gt.dataset, sort_keys=True) == before  # no "ignore" or match marks added


def test_annotation_id_zero_scores_as_any_other_id(coco_gt, tmp_path):
    """Annotation ids are match markers in COCOeval (pycocotools' and faster-coco-eval's), where 0 means
    "unmatched": pycocotools silently counts a match to a box with id 0 as a false positive. Exports that number
    from 0 exist, so the evaluator renumbers: the file then scores as the same file numbered from 1."""
    reference, _ = evaluate(coco_gt, [1, 2, 3, 4])
    dataset = gt_json()
    for annotation in dataset["annotations"]:
        annotation["id"] -= 1
    (tmp_path / "zero").mkdir()
    metrics, _ = evaluate(load_coco(dataset, tmp_path / "zero"), [1, 2, 3, 4])
    assert metrics == reference
    # the case is one where pycocotools goes wrong: its exact box for id 0 (image 1, score 0.95) is lost
    assert pycocotools_stats(tmp_path / "zero" / "gt.json", DETECTIONS, tmp_path)[0] < reference["AP"] - 0.1


# -- random large cases ----------------------------------------------------------------------------------------------

RANDOM_CATEGORIES = (1, 3, 8, 13, 44, 90)  # gapped ids, as COCO's


def random_case(seed: int, num_images: int = 300) -> tuple[dict, list[tuple], dict[int, int]]:
    """GT dict and detection rows: crowd boxes, all three areas, images without GT, images without detections,
    images with more than 100 detections (COCOeval keeps the top 100), and tied scores."""
    rng = np.random.default_rng(seed)
    images, annotations, rows = [], [], []
    for image_id in range(1, num_images + 1):
        width, height = int(rng.integers(200, 801)), int(rng.integers(200, 801))
        images.append({"id": image_id, "width": width, "height": height, "file_name": f"{image_id}.jpg"})
        n = 0 if image_id % 23 == 0 else int(rng.integers(1, 16))
        w = np.exp(rng.uniform(np.log(3), np.log(0.8 * width), n))
        h = np.clip(w * np.exp(rng.normal(0, 0.4, n)), 3, 0.8 * height)
        x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
        # whole pixels and halves, so xywh -> xyxy float32 -> xywh float64 is exact
        x, y, w, h = (np.round(v * 2) / 2 for v in (x, y, w, h))
        categories = rng.choice(RANDOM_CATEGORIES, n)
        crowd = rng.random(n) < 0.05
        for k in range(n):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(categories[k]),
                    "bbox": [float(x[k]), float(y[k]), float(w[k]), float(h[k])],
                    "area": float(w[k] * h[k]),
                    "iscrowd": int(crowd[k]),
                }
            )
        if image_id % 17 == 0:
            continue  # no detections for this image
        num_detections = 130 if image_id % 29 == 0 else int(rng.integers(0, 40))
        source = rng.integers(0, max(n, 1), num_detections)
        near = (rng.random(num_detections) < 0.6) & (n > 0)
        for j in range(num_detections):
            if near[j]:
                k = source[j]
                dx, dy = np.round(rng.normal(0, 0.15, 2) * [w[k], h[k]] * 2) / 2
                box = [x[k] + dx, y[k] + dy, w[k], h[k]]
                category = int(categories[k]) if rng.random() < 0.8 else int(rng.choice(RANDOM_CATEGORIES))
            else:
                bw, bh = float(rng.integers(2, width // 2)), float(rng.integers(2, height // 2))
                box = [float(rng.integers(0, width - bw)), float(rng.integers(0, height - bh)), bw, bh]
                category = int(rng.choice(RANDOM_CATEGORIES))
            score = float(np.float32(round(rng.uniform(0, 1), 1)))  # coarse scores: many ties
            rows.append((image_id, category, *(float(v) for v in box), score))
    gt = {"images": images, "annotations": annotations, "categories": [{"id": c} for c in RANDOM_CATEGORIES]}
    return gt, rows, {label: c for label, c in enumerate(RANDOM_CATEGORIES, start=1)}


def random_outputs(rows, image_ids, label_to_category) -> list[dict[str, torch.Tensor]]:
    category_to_label = {c: label for label, c in label_to_category.items()}
    by_image: dict[int, list[tuple]] = {}
    for row in rows:
        by_image.setdefault(row[0], []).append(row)
    outputs = []
    for image_id in image_ids:
        mine = by_image.get(image_id, [])
        boxes = [[x, y, x + w, y + h] for _, _, x, y, w, h, _ in mine]
        outputs.append(
            {
                "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                "scores": torch.tensor([r[6] for r in mine], dtype=torch.float32),
                "labels": torch.tensor([category_to_label[r[1]] for r in mine], dtype=torch.int64),
            }
        )
    return outputs


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_pycocotools_on_random_large_case(seed, tmp_path):
    gt, rows, label_to_category = random_case(seed)
    coco_gt = load_coco(gt, tmp_path)
    image_ids = [image["id"] for image in gt["images"]]
    assert sum(a["iscrowd"] for a in gt["annotations"]) > 0 and len(rows) > 5000
    expected = pycocotools_stats(tmp_path / "gt.json", rows, tmp_path)

    evaluator = CocoEvaluator(coco_gt, label_to_category)
    for start in range(0, len(image_ids), 32):
        batch = image_ids[start : start + 32]
        evaluator.update(batch, random_outputs(rows, batch, label_to_category))
    metrics = evaluator.compute()
    assert list(metrics.values()) == pytest.approx(expected, abs=TOLERANCE)
    assert all(0.02 < metrics[name] < 0.98 for name in ("AP", "APs", "APm", "APl", "AR100"))  # not trivial

    # The DDP path: one update with every rank's gathered detections, padded with repeats, out of order.
    shuffled = list(np.random.default_rng(seed).permutation(image_ids)) + image_ids[:7]
    gathered = CocoEvaluator(coco_gt, label_to_category)
    gathered.update(shuffled, random_outputs(rows, shuffled, label_to_category))
    assert gathered.compute() == metrics  # the same detections of the same images: the same stats, bit for bit


def test_random_case_restricted_to_seen_images(tmp_path):
    gt, rows, label_to_category = random_case(2, num_images=120)
    coco_gt = load_coco(gt, tmp_path)
    seen = list(range(1, 121, 3))
    seen_rows = [row for row in rows if row[0] in set(seen)]
    evaluator = CocoEvaluator(coco_gt, label_to_category)
    evaluator.update(seen, random_outputs(rows, seen, label_to_category))
    expected = pycocotools_stats(tmp_path / "gt.json", seen_rows, tmp_path, image_ids=seen)
    assert list(evaluator.compute().values()) == pytest.approx(expected, abs=TOLERANCE)
