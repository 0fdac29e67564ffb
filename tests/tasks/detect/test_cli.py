"""The detection CLI driven in-process through `main([...])` on tiny generated data."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from tasks.detect.task import DetectionTask, main
from tests.helpers import QUIET_CPU_TRAINER, last_checkpoint_path
from tests.tasks.detect.fixtures import write_coco_dataset, write_voc_dataset

SMALL = [
    "--backbone",
    "v3_small",
    "--width",
    "0.5",
    "--data.image_size",
    "96",
    "--data.batch_size",
    "2",
    "--data.num_workers",
    "0",
    *QUIET_CPU_TRAINER,
]


def run(tmp_path: Path, subcommand: str, *args: str):
    return main([subcommand, *SMALL, "--trainer.default_root_dir", str(tmp_path), *args])


def synthetic(tmp_path: Path) -> list[str]:
    return [
        "--data.cache_dir",
        str(tmp_path / "cache"),
        "--data.synthetic_train_images",
        "8",
        "--data.synthetic_val_images",
        "4",
        "--data.synthetic_image_size",
        "96",
    ]


@pytest.mark.parametrize("data_format", ["synthetic", "coco", "voc"])
def test_fast_dev_run_on_each_format(tmp_path, data_format):
    if data_format == "synthetic":
        data = synthetic(tmp_path)
    elif data_format == "coco":
        data = ["--data.format", "coco", "--data.root", str(write_coco_dataset(tmp_path / "coco"))]
    else:
        root = write_voc_dataset(tmp_path / "voc")
        data = [
            "--data.format",
            "voc",
            "--data.root",
            str(root),
            "--data.train_split",
            "VOC2007/train",
            "--data.val_split",
            "VOC2007/val",
        ]
    cli = run(tmp_path, "fit", "--trainer.fast_dev_run", "1", *data)
    model = cli.model
    assert model.hparams.num_classes == cli.datamodule.num_classes
    assert model.class_names == cli.datamodule.class_names
    assert model.model.backbone.spec.name == "v3_small" and model.model.backbone.width == 0.5
    metrics = cli.trainer.callback_metrics
    assert "train/loss" in metrics and torch.isfinite(metrics["train/loss"])
    assert {"val/AP", "val/AP50"} <= set(metrics)
    if data_format == "voc":
        assert "val/mAP50" in metrics


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory) -> tuple[Path, list[str]]:
    tmp_path = tmp_path_factory.mktemp("fit")
    data = synthetic(tmp_path)
    cli = run(tmp_path, "fit", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", *data)
    checkpoint = Path(last_checkpoint_path(cli.trainer))
    assert checkpoint.is_file()
    return checkpoint, data


def test_validate_and_test_print_the_table(tmp_path, trained_checkpoint, capsys):
    checkpoint, data = trained_checkpoint
    for subcommand in ("validate", "test"):
        cli = run(tmp_path, subcommand, "--ckpt_path", str(checkpoint), *data)
        prefix = "val" if subcommand == "validate" else "test"
        assert 0.0 <= float(cli.trainer.callback_metrics[f"{prefix}/AP50"]) <= 1.0
        assert f"{prefix} (4 images)" in capsys.readouterr().out


def test_predict_writes_drawn_images_and_coco_results(tmp_path, trained_checkpoint):
    checkpoint, data = trained_checkpoint
    images = tmp_path / "images"
    images.mkdir()
    for index, mode in enumerate(["RGB", "L", "RGBA"]):
        Image.new(mode, (120, 80), color=(90,) * len(mode)).save(images / f"image{index}.png")
    out = tmp_path / "out"
    run(
        tmp_path,
        "predict",
        "--ckpt_path",
        str(checkpoint),
        "--data.predict_root",
        str(images),
        "--model.predict_dir",
        str(out),
        *data,
    )
    assert sorted(p.name for p in out.glob("*.jpg")) == ["image0.jpg", "image1.jpg", "image2.jpg"]
    assert Image.open(out / "image0.jpg").size == (120, 80)
    results = json.loads((out / "detections.json").read_text())
    assert all({"image_id", "category_id", "category_name", "bbox", "score"} <= set(r) for r in results)
    assert all(0 <= r["bbox"][0] <= 120 and r["bbox"][2] >= 0 for r in results)


def test_checkpoint_with_another_class_count_is_refused(tmp_path, trained_checkpoint):
    checkpoint, _ = trained_checkpoint
    coco = ["--data.format", "coco", "--data.root", str(write_coco_dataset(tmp_path / "coco"))]  # 3 classes, not 4
    with pytest.raises(ValueError, match=r"trained with num_classes=5, this run has num_classes=4"):
        run(tmp_path, "validate", "--ckpt_path", str(checkpoint), *coco)


def test_unknown_backbone_is_named(tmp_path):
    with pytest.raises(SystemExit, match="--backbone 'v9' is not one of"):
        main(["fit", "--backbone", "v9", "--trainer.fast_dev_run", "1", *synthetic(tmp_path)])


def test_missing_data_root_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent"):
        run(
            tmp_path,
            "fit",
            "--trainer.fast_dev_run",
            "1",
            "--data.format",
            "coco",
            "--data.root",
            str(tmp_path / "absent"),
        )


def test_task_rejects_mismatched_class_names():
    with pytest.raises(ValueError, match="class_names has 2 entries for num_classes=3"):
        DetectionTask(backbone="v3_small", num_classes=3, class_names=["background", "a"])


@pytest.mark.parametrize(
    "recipe", sorted((Path(__file__).parents[3] / "configs" / "detect").glob("*.yaml")), ids=lambda p: p.stem
)
def test_recipes_parse(recipe, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(recipe), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "backbone:" in printed and "max_epochs:" in printed


def test_corrupt_image_is_skipped_counted_and_reported(tmp_path, caplog):
    root = write_coco_dataset(tmp_path / "coco")
    corrupt = sorted((root / "val").glob("*.jpg"))[1]
    corrupt.write_bytes(b"\xff\xd8\xff not a jpeg")
    data = ["--data.format", "coco", "--data.root", str(root), "--data.skip_bad_samples", "true"]
    cli = run(tmp_path, "fit", "--trainer.max_epochs", "1", *data)
    assert float(cli.trainer.callback_metrics["val/skipped_images"]) >= 1
    assert corrupt.name in caplog.text and "1 bad samples replaced by their neighbours" in caplog.text


def test_predicted_category_ids_are_the_datasets_own(tmp_path):
    """A COCO dataset with category ids 1, 5, 90: labels 1..3 are written back as those ids."""
    from types import SimpleNamespace

    from tasks.detect.data.module import DetectionDataModule
    from tasks.detect.outputs import DetectionPredictionWriter

    root = write_coco_dataset(tmp_path / "coco", category_ids=(1, 5, 90))
    datamodule = DetectionDataModule(format="coco", root=str(root), image_size=96)
    assert datamodule.label_to_category_id == {1: 1, 2: 5, 3: 90}
    image = next((root / "val").glob("*.jpg"))
    detection = {
        "path": str(image),
        "boxes": torch.tensor([[1.0, 2.0, 30.0, 40.0], [5.0, 5.0, 20.0, 20.0]]),
        "scores": torch.tensor([0.9, 0.8]),
        "labels": torch.tensor([3, 2]),
    }
    writer = DetectionPredictionWriter(str(tmp_path / "out"), datamodule.class_names)
    writer.write_on_epoch_end(SimpleNamespace(datamodule=datamodule), None, [[detection]], [])
    results = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert [(r["category_id"], r["category_name"]) for r in results] == [(90, "cat90"), (5, "cat5")]
    assert results[0]["bbox"] == [1.0, 2.0, 29.0, 38.0]


def test_predict_says_how_many_were_drawn_and_how_to_see_more(tmp_path, caplog):
    from types import SimpleNamespace

    from tasks.detect.outputs import DetectionPredictionWriter

    image = tmp_path / "a.png"
    Image.new("RGB", (40, 30)).save(image)
    detection = {"path": str(image), "boxes": torch.tensor([[1.0, 2.0, 20.0, 20.0]]), "scores": torch.tensor([0.2])}
    detection["labels"] = torch.tensor([1])
    for threshold, expected in ((0.3, "0 detections drawn"), (0.1, "1 detections drawn")):
        writer = DetectionPredictionWriter(str(tmp_path / "out"), ["background", "thing"], threshold)
        with caplog.at_level("INFO"):
            writer.write_on_epoch_end(SimpleNamespace(datamodule=None), None, [[detection]], [])
        assert f"1 images with {expected} (score >= {threshold:g})" in caplog.text
        assert ("lower --model.draw_score_threshold" in caplog.text) == (threshold == 0.3)
        caplog.clear()


def test_a_models_own_fit_defaults_reach_the_trainer(tmp_path, capsys):
    data = [*synthetic(tmp_path), "--trainer.max_steps", "1", "--trainer.limit_val_batches", "0"]
    cli = run(tmp_path, "fit", "--backbone", "v4_conv_small", *data)
    assert cli.trainer.max_epochs == 4  # ssdlite320_v4_conv_small's, over the task's 2
    assert "ssdlite320_v4_conv_small trains with its own defaults: --trainer.max_epochs 4" in capsys.readouterr().out
    cli = run(tmp_path, "fit", "--backbone", "v4_conv_small", "--trainer.max_epochs", "1", *data)
    assert cli.trainer.max_epochs == 1
