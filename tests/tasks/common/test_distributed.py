"""Two CPU processes (DDP over gloo) evaluate a checkpoint to exactly the metrics of one process.

The validation sets have an odd number of images, so a padding distributed sampler would repeat one of them
on the second rank; COCO mAP must count each image once, the mIoU confusion matrix each pixel once and top-1/top-5
each image once. Each rank records the samples it evaluated (tests/tasks/common/evaluated_samples.py): the shards
must be disjoint and together hold every image once, which also catches padding that a metric would hide (COCO
evaluation drops a repeated image id). The two-process runs are real `python -m tasks.<task> validate
--trainer.strategy ddp` subprocesses.
"""

import csv
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from tasks import classify, detect, segment
from tests.helpers import last_checkpoint_path
from tests.tasks.common.evaluated_samples import evaluated_samples
from tests.tasks.detect.fixtures import write_coco_dataset

REPO = Path(__file__).parents[3]
COMMON = ["--backbone", "v3_small", "--width", "0.5", "--data.num_workers", "0", "--trainer.accelerator", "cpu"]
TASKS = {
    "classify": (
        classify.main,
        ["--resolution", "32", "--data.synthetic_image_size", "40", "--data.batch_size", "2"],
        ("val/top1", "val/top5"),
    ),
    "detect": (
        detect.main,
        ["--data.image_size", "96", "--data.batch_size", "2"],
        ("val/AP", "val/AP50", "val/AR100", "val/mAP50"),
    ),
    "segment": (
        segment.main,
        [
            "--data.crop_size",
            "64",
            "--data.base_size",
            "64",
            "--data.batch_size",
            "2",
            "--data.synthetic_image_size",
            "64",
        ],
        ("val/mIoU", "val/pixel_accuracy"),
    ),
}


def last_metrics(root: Path) -> dict[str, float]:
    (path,) = root.glob("lightning_logs/version_*/metrics.csv")
    with path.open() as file:
        rows = list(csv.DictReader(file))
    return {k: float(v) for row in rows for k, v in row.items() if v not in ("", None) and k.startswith("val/")}


def record_samples(folder: Path) -> list[str]:
    """CLI arguments that add `RecordEvaluatedSamples`, writing each rank's evaluated samples into `folder`."""
    probe = "tests.tasks.common.evaluated_samples.RecordEvaluatedSamples"
    return [f"--trainer.callbacks+={probe}", "--trainer.callbacks.out_dir", str(folder)]


@contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one thread, as in the OMP_NUM_THREADS=1 subprocesses: the same float sums in both runs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def task_data(task: str, tmp_path: Path) -> tuple[list[str], list[str]]:
    """(data arguments, fit-only arguments). Detection fits and evaluates 5 COCO images (val = train), so that a
    few dozen steps give a non-zero mAP to compare; classification and segmentation use 5 synthetic val images."""
    if task == "detect":
        root = write_coco_dataset(tmp_path / "coco", num_images=5, splits=("train",))
        data = ["--data.format", "coco", "--data.root", str(root), "--data.val_split", "train"]
        return data, ["--trainer.max_epochs", "12", "--model.lr", "0.01", "--model.warmup_epochs", "0"]
    train_images = "8" if task == "classify" else "4"  # the synthetic classes: one image each at the least
    data = ["--data.cache_dir", str(tmp_path / "cache"), "--data.synthetic_train_images", train_images]
    data += ["--data.synthetic_val_images", "5"]
    return data, ["--trainer.max_epochs", "1"]


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(TASKS))
def test_two_processes_give_the_one_process_metrics(tmp_path, task):
    main, sizes, names = TASKS[task]
    data, fit_only = task_data(task, tmp_path)
    fit = main(
        ["fit", *COMMON, *sizes, *data, *fit_only, "--trainer.logger", "false"]
        + ["--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path / "fit")]
    )
    checkpoint = last_checkpoint_path(fit.trainer)
    # one image per batch and one thread in both runs: batching images differently, or another thread count,
    # changes float sums in the last bits; the metrics of both runs are then computed from the same numbers
    data += ["--data.batch_size" if task == "detect" else "--data.eval_batch_size", "1"]
    with one_thread():
        main(
            ["validate", *COMMON, *sizes, *data, "--ckpt_path", checkpoint, *record_samples(tmp_path / "one_samples")]
            + ["--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path / "one")]
        )
    expected = last_metrics(tmp_path / "one")

    command = [sys.executable, "-m", f"tasks.{task}", "validate", *COMMON, *sizes, *data, "--ckpt_path", checkpoint]
    command += ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.enable_progress_bar", "false"]
    command += ["--trainer.default_root_dir", str(tmp_path / "two"), *record_samples(tmp_path / "two_samples")]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    measured = last_metrics(tmp_path / "two")
    assert "images)" in result.stdout  # the printed table of rank 0

    # the shards: disjoint, and together every image of the one-process run, each once
    (everything,) = evaluated_samples(tmp_path / "one_samples")
    first, second = evaluated_samples(tmp_path / "two_samples")
    assert len(everything) == len(set(everything)) == 5
    assert first and second and not set(first) & set(second)
    assert sorted(first + second) == sorted(everything)

    for name in names:  # the same numbers summed the same way: equal, not close
        assert measured[name] == expected[name], name
    assert any(value > 0 for value in expected.values())  # not a comparison of zeros
    if task == "classify":  # a fraction strictly between 0 and 1 changes when an image is counted twice
        assert all(0 < expected[name] < 1 for name in names), expected


@pytest.mark.slow
# one task: the three share the sampler (tasks/common/loaders.py); their metrics under DDP are checked per task above
@pytest.mark.parametrize("task", ["detect"])
def test_two_process_training_shards_the_data(tmp_path, task):
    """8 training images, batch 2, 2 ranks: 2 steps per epoch on each rank (4 in one process)."""
    sizes = {
        "classify": ["--resolution", "32", "--data.synthetic_image_size", "40", "--data.batch_size", "2"],
        "detect": TASKS["detect"][1] + ["--data.synthetic_image_size", "96"],
        "segment": TASKS["segment"][1],
    }[task]
    data = ["--data.cache_dir", str(tmp_path / "cache"), "--data.synthetic_train_images", "8"]
    data += ["--data.synthetic_val_images", "3"]
    command = [sys.executable, "-m", f"tasks.{task}", "fit", *COMMON, *sizes, *data, "--trainer.max_epochs", "1"]
    command += ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.enable_progress_bar", "false"]
    command += ["--trainer.default_root_dir", str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (checkpoint,) = tmp_path.glob("lightning_logs/version_*/checkpoints/last.ckpt")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert state["global_step"] == 2
