"""`python -m tasks.detect fit` on data in the layouts users bring, driven in-process through `main([...])`: one
training step and one validation each; the held-out split's file; predict from the checkpoint alone; the one-line
error when no layout is found."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from tasks.common.splits import VAL_SPLIT_FILE
from tasks.detect.task import main
from tests.helpers import QUIET_CPU_TRAINER, last_checkpoint_path, write_noise_images
from tests.tasks.detect.data.layouts import COCO_LAYOUTS, named_arguments, named_files, voc_without_lists

TINY = [
    "--backbone", "v3_small", "--width", "0.5",
    "--data.image_size", "64", "--data.batch_size", "2", "--data.num_workers", "0",
    *QUIET_CPU_TRAINER,
    "--trainer.enable_model_summary", "false", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1",
]  # fmt: skip
# the other COCO layouts differ only in where the files are, which tests/tasks/detect/data/test_layouts.py finds for
# each in the fast tier; fitting on them is the slow tier's
SLOW_LAYOUTS = ("cvat_subsets", "roboflow")
LAYOUTS = [
    pytest.param(layout, marks=pytest.mark.slow) if layout in SLOW_LAYOUTS else layout
    for layout in [*COCO_LAYOUTS, "named_files", "voc_without_lists"]
]


def _data_arguments(layout: str, folder: Path) -> list[str]:
    if layout == "named_files":
        return ["--data.format", "coco", *(f"--data.{k}={v}" for k, v in named_arguments(named_files(folder)).items())]
    if layout == "voc_without_lists":
        return ["--data.format", "voc", "--data.root", str(voc_without_lists(folder))]
    COCO_LAYOUTS[layout](folder)
    return ["--data.format", "coco", "--data.root", str(folder)]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """layout -> (the CLI of one `fit` on it, its folder); each layout is fitted once per module."""
    runs: dict[str, tuple[Any, Path]] = {}

    def fit(layout: str) -> tuple[Any, Path]:
        if layout not in runs:
            folder = tmp_path_factory.mktemp(layout)
            data = [*_data_arguments(layout, folder / "data"), "--data.cache_dir", str(folder / "cache")]
            runs[layout] = main(["fit", *TINY, "--trainer.default_root_dir", str(folder / "run"), *data]), folder
        return runs[layout]

    return fit


@pytest.mark.parametrize("layout", LAYOUTS)
def test_fit_one_step_on_each_layout(fitted: Any, layout: str) -> None:
    cli, _ = fitted(layout)
    metrics = cli.trainer.callback_metrics
    assert cli.trainer.global_step == 1 and torch.isfinite(metrics["train/loss"])
    assert "val/AP" in metrics
    expected = ["cog", "gadget", "person", "sprocket", "widget"] if layout == "voc_without_lists" else None
    assert cli.model.class_names[1:] == (expected or ["cat3", "cat7", "cat11"])
    evaluated = cli.model.evaluated_images(cli.datamodule.val_dataset)
    assert evaluated == len(cli.datamodule.val_dataset) == (1 if layout in ("cvat_single", "voc_without_lists") else 4)


@pytest.mark.parametrize("layout", ["cvat_single", "voc_without_lists"])
def test_the_held_out_validation_images_are_listed_in_the_run_folder(fitted: Any, layout: str) -> None:
    cli, folder = fitted(layout)
    listed = (folder / "run" / VAL_SPLIT_FILE).read_text().split()
    val, train = cli.datamodule.val_dataset, cli.datamodule.train_dataset
    assert listed == [record.path.name for record in val.records] and len(listed) == 1
    assert not set(listed) & {record.path.name for record in train.records}  # never trained on
    assert len(train) == 5


def test_predict_from_the_checkpoint_alone_writes_the_datas_categories(
    fitted: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fitted on COCO files named by arguments, category ids 3, 7, 11: predict needs only the checkpoint and the
    images, even with the training data deleted, and writes the data's own ids and names."""
    cli, folder = fitted("named_files")
    checkpoint = tmp_path / "model.ckpt"
    shutil.copy(last_checkpoint_path(cli.trainer), checkpoint)
    shutil.rmtree(folder / "data")
    write_noise_images(tmp_path / "images", [(48, 64), (40, 40)])
    monkeypatch.chdir(tmp_path)  # the default predict_dir and run folder
    main(["predict", "--ckpt_path", str(checkpoint), "--data.predict_root", str(tmp_path / "images")])
    results = json.loads((tmp_path / "predictions" / "detections.json").read_text())
    assert results and {r["file_name"] for r in results} <= {"0.png", "1.png"}
    assert {(r["category_id"], r["category_name"]) for r in results} <= {(3, "cat3"), (7, "cat7"), (11, "cat11")}


def test_no_layout_is_one_error_line_on_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "export"
    (root / "labels").mkdir(parents=True)
    (root / "labels" / "project.json").write_text("{}")
    monkeypatch.setattr(sys, "argv", ["tasks.detect", "fit", *TINY, "--data.format", "coco", "--data.root", str(root)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    message = str(exit_info.value.code)
    assert message.startswith(f"error: no COCO dataset layout found under {root}") and "\n" not in message
    assert ".json files there: labels/project.json." in message and "--data.train_annotations FILE" in message
