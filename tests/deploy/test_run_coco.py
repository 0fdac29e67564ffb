"""COCO AP from the torch-free runner's `detections.json` on the val split equals the detection task's own
evaluation of the checkpoint, for the end-to-end ONNX file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from faster_coco_eval import COCO, COCOeval_faster

from tasks.common.export import export_checkpoint
from tasks.detect.metrics.coco import CocoEvaluator
from tasks.detect.model import to_original_coordinates
from tests.helpers import tiny_task, with_measured_statistics, write_checkpoint

pytestmark = pytest.mark.slow  # an export and a runner process: about 5 s


def json_ap(annotations: Path, results: Path) -> float:
    """COCO AP of the runner's results, its images matched to the annotations by file name."""
    ground_truth = COCO(str(annotations))
    image_ids = {Path(image["file_name"]).name: image_id for image_id, image in ground_truth.imgs.items()}
    found = json.loads(results.read_text())
    for detection in found:
        detection["image_id"] = image_ids[detection["file_name"]]
    evaluation = COCOeval_faster(ground_truth, ground_truth.loadRes(found), "bbox", print_function=lambda *_: None)
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    return float(evaluation.stats[0])


@pytest.mark.parametrize("format", ["onnx"])  # OpenVINO files give the ONNX results: tests/deploy/test_run_openvino.py
def test_ap_from_the_runners_json_equals_the_tasks(tmp_path, format):
    torch.manual_seed(0)
    module, data = tiny_task("detect", tmp_path / "cache")
    data.setup("fit")
    train = data.build_dataset(data.train_split, train=False)
    with_measured_statistics(module.model, torch.stack([train[i][0] for i in range(len(train))]))
    checkpoint = write_checkpoint(tmp_path / "detect.ckpt", module, data)
    data.setup("validate")
    dataset = data.val_dataset
    evaluator = CocoEvaluator(dataset.coco_gt, dataset.label_to_category_id)
    with torch.inference_mode():
        for images, targets in data.val_dataloader():
            found = to_original_coordinates(
                module.model(images), [t["scale"] for t in targets], [t["orig_size"] for t in targets]
            )
            evaluator.update([int(t["image_id"]) for t in targets], found)
    reference = evaluator.compute()["AP"]
    exported = export_checkpoint("detect", checkpoint, format, output=tmp_path / f"d.{format}", dynamic_batch=True)
    folder = Path(dataset.annotation_file).parent.parent / "val"
    command = [sys.executable, "-m", "deploy.run", str(exported.path), str(folder), "--out", str(tmp_path / "run")]
    subprocess.run(command, check=True, capture_output=True)
    assert reference > 0  # random boxes still hit a few: the comparison means something
    assert json_ap(Path(dataset.annotation_file), tmp_path / "run" / "detections.json") == pytest.approx(
        reference, rel=1e-3
    )
