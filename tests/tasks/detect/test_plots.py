"""Detection validation plots: PR curves equal COCOeval's precision array (and pycocotools'), the confusion matrix of
matched detections on a hand-made case, drawn validation images, and the PNGs of a short fit in the run folder."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tasks.detect.metrics.coco import CocoEvaluator
from tasks.detect.plots import detection_confusion_matrix, pr_curve_figure
from tests.helpers import png_pixels, validated_figures
from tests.tasks.detect.metrics.test_coco import DETECTIONS, LABEL_TO_CATEGORY, gt_json, load_coco, model_outputs
from tests.tasks.detect.test_cli import run, synthetic

IMAGE_IDS = [1, 2, 3, 4]


def pycocotools_precision(tmp_path) -> np.ndarray:
    """The reference: pycocotools' accumulated precision [T, R, K, A, M] on the same hand-made case."""
    results = [
        {"image_id": i, "category_id": c, "bbox": [x, y, w, h], "score": s} for i, c, x, y, w, h, s in DETECTIONS
    ]
    (tmp_path / "results.json").write_text(json.dumps(results))
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(tmp_path / "gt.json"))
        coco_eval = COCOeval(coco, coco.loadRes(str(tmp_path / "results.json")), iouType="bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
    return coco_eval.eval["precision"]


def test_pr_curves_are_cocoevals_precision_at_iou_half(tmp_path):
    evaluator = CocoEvaluator(load_coco(gt_json(), tmp_path), LABEL_TO_CATEGORY)
    evaluator.update(IMAGE_IDS, model_outputs(DETECTIONS, IMAGE_IDS))
    metrics = evaluator.compute()
    accumulated = evaluator.accumulated
    assert accumulated.category_ids == (1, 7, 90)
    expected = accumulated.precision[0, :, :, 0, 2].T  # IoU 0.5, area "all", maxDets 100
    assert np.array_equal(accumulated.curves(), expected)
    reference = pycocotools_precision(tmp_path)[0, :, :, 0, 2].T
    assert expected == pytest.approx(reference, abs=1e-6)

    names = {1: "one", 7: "seven", 90: "ninety"}
    figure = pr_curve_figure(accumulated, names)
    lines = {line.get_gid(): line for line in figure.axes[0].get_lines()}
    for k, category in enumerate(accumulated.category_ids):
        line = lines[f"category_{category}"]
        assert np.array_equal(line.get_xdata(), accumulated.recall_thresholds)
        assert np.array_equal(line.get_ydata(), expected[k])
    assert float(np.mean(lines["mean"].get_ydata())) == pytest.approx(metrics["AP50"], abs=1e-9)
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert legend[0] == f"one {expected[0].mean():.3f}" and legend[-1] == f"all classes {metrics['AP50']:.3f}"
    figure.savefig(tmp_path / "pr.png")
    png_pixels(tmp_path / "pr.png")
    with pytest.raises(ValueError, match="not one of COCOeval's thresholds"):
        accumulated.curves(iou=0.3)


def test_categories_without_ground_truth_are_left_out(tmp_path):
    evaluator = CocoEvaluator(load_coco(gt_json(), tmp_path), LABEL_TO_CATEGORY)
    evaluator.update([4], model_outputs(DETECTIONS, [4]))  # image 4 holds category 90 only
    evaluator.compute()
    gids = {line.get_gid() for line in pr_curve_figure(evaluator.accumulated, {}).axes[0].get_lines()}
    assert gids == {"category_90", "mean"}


def detections(rows: list[tuple[list[float], float, int]]) -> dict[str, torch.Tensor]:
    return {
        "boxes": torch.tensor([box for box, _, _ in rows], dtype=torch.float32).reshape(-1, 4),
        "scores": torch.tensor([score for _, score, _ in rows]),
        "labels": torch.tensor([label for *_, label in rows], dtype=torch.int64),
    }


def test_confusion_matrix_counts_matches_misses_and_false_positives():
    ground_truth = [
        (  # image A: three boxes of classes 1, 2, 3
            np.array([[0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 60, 60]], dtype=np.float32),
            np.array([1, 2, 3]),
            np.array([False, False, False]),
        ),
        (  # image B: a class-1 box and an ignored (crowd / difficult) class-2 box
            np.array([[0, 0, 20, 20], [30, 30, 50, 50]], dtype=np.float32),
            np.array([1, 2]),
            np.array([False, True]),
        ),
    ]
    found = [
        detections(
            [
                ([0, 0, 10, 10], 0.9, 1),  # right box, right class
                ([21, 21, 40, 40], 0.8, 3),  # IoU 0.9025 with the class-2 box: predicted 3 for 2
                ([100, 100, 110, 110], 0.7, 2),  # nothing there: a false positive
                ([50, 50, 60, 60], 0.2, 3),  # would match the class-3 box, but below the score threshold
            ]
        ),
        detections(
            [
                ([0, 0, 20, 10], 0.9, 1),  # IoU 0.5 exactly: a match, but the next has the higher IoU
                ([0, 0, 20, 20], 0.6, 1),  # IoU 1: matched first, so the one above is a duplicate
                ([30, 30, 50, 50], 0.9, 2),  # on the ignored box: neither a match nor a false positive
            ]
        ),
    ]
    expected = np.zeros((4, 4), dtype=np.int64)
    expected[1, 1] = 2  # A's class 1, B's class 1
    expected[2, 3] = 1  # class 2 predicted as class 3
    expected[3, 0] = 1  # A's class-3 box missed (its detection scored 0.2)
    expected[0, 2] = 1  # the false positive in A
    expected[0, 1] = 1  # the duplicate in B
    matrix = detection_confusion_matrix(ground_truth, found, num_classes=4, score_threshold=0.3)
    assert matrix.tolist() == expected.tolist()
    # at a threshold of 0.1 the class-3 box is found
    low = detection_confusion_matrix(ground_truth, found, num_classes=4, score_threshold=0.1)
    assert low[3, 3] == 1 and low[3, 0] == 0
    # a detection overlapping two boxes goes to the one of higher IoU, the other is missed
    one = detection_confusion_matrix(
        [(np.array([[0, 0, 10, 10], [0, 0, 10, 12]], dtype=np.float32), np.array([1, 2]), np.zeros(2, bool))],
        [detections([([0, 0, 10, 11.5], 0.9, 3)])],
        num_classes=4,
        score_threshold=0.3,
    )
    assert one[2, 3] == 1 and one[1, 0] == 1 and one.sum() == 2
    with pytest.raises(ValueError, match="ground-truth entries"):
        detection_confusion_matrix(ground_truth, found[:1], num_classes=4, score_threshold=0.3)


def test_validation_figures_of_a_validate_run(tmp_path):
    # an untrained model: draw and count every detection
    module, data, _, figures = validated_figures("detect", tmp_path, draw_score_threshold=0.0)
    assert set(figures) == {"pr_curve", "confusion_matrix", "val_predictions"}
    records = data.val_dataset.records
    plots = module._plots
    # every truth box of the val set is in one row of the matrix; each image is drawn twice (truth, detections)
    assert plots.confusion[1:].sum() == sum(int((~r.ignore).sum()) for r in records)
    assert [record.image_id for record, _ in plots.samples] == [r.image_id for r in records][: len(plots.samples)]
    assert len(figures["val_predictions"].axes) == 2 * len(plots.samples) == 2 * len(records)
    predicted = figures["val_predictions"].axes[1].get_images()[0].get_array()
    original = figures["val_predictions"].axes[0].get_images()[0].get_array()
    assert predicted.shape == original.shape == (records[0].height, records[0].width, 3)


def test_fit_writes_the_plots_into_the_run_folder(tmp_path):
    cli = run(tmp_path, "fit", "--trainer.max_epochs", "1", *synthetic(tmp_path))
    folder = tmp_path  # no logger: the run folder is the root
    assert cli.trainer.log_dir in (None, str(folder))
    for name in ("pr_curve", "confusion_matrix", "val_predictions"):
        png_pixels(folder / f"{name}.png")
