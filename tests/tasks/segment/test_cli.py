"""The segmentation CLI driven in-process through `main([...])` on tiny generated data."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tasks.segment.task import main
from tests.helpers import QUIET_CPU_TRAINER, last_checkpoint_path
from tests.tasks.segment.fixtures import write_coco_segmentation, write_voc_segmentation

SMALL = [
    "--backbone",
    "v3_small",
    "--width",
    "0.5",
    "--data.crop_size",
    "64",
    "--data.base_size",
    "64",
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
        "6",
        "--data.synthetic_val_images",
        "3",
        "--data.synthetic_image_size",
        "64",
    ]


@pytest.mark.parametrize("data_format, head", [("synthetic", "lraspp"), ("voc", "deeplabv3"), ("coco", "lraspp")])
def test_fast_dev_run_on_each_format(tmp_path, data_format, head):
    if data_format == "synthetic":
        data = synthetic(tmp_path)
    elif data_format == "voc":
        data = ["--data.format", "voc", "--data.root", str(write_voc_segmentation(tmp_path / "voc"))]
    else:
        data = ["--data.format", "coco", "--data.root", str(write_coco_segmentation(tmp_path / "coco"))]
    extra = ["--model.aux_loss", "true"] if head == "deeplabv3" else []
    cli = run(tmp_path, "fit", "--head", head, "--trainer.fast_dev_run", "1", *extra, *data)
    assert cli.model.hparams.head == head and cli.model.hparams.num_classes == cli.datamodule.num_classes
    metrics = cli.trainer.callback_metrics
    assert 0.0 <= float(metrics["val/mIoU"]) <= 1.0 and "val/pixel_accuracy" in metrics


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory) -> tuple[Path, list[str]]:
    tmp_path = tmp_path_factory.mktemp("segment-fit")
    data = synthetic(tmp_path)
    cli = run(tmp_path, "fit", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", *data)
    return Path(last_checkpoint_path(cli.trainer)), data


def test_validate_prints_the_iou_table(tmp_path, trained_checkpoint, capsys):
    checkpoint, data = trained_checkpoint
    cli = run(tmp_path, "validate", "--ckpt_path", str(checkpoint), *data)
    assert 0.0 <= float(cli.trainer.callback_metrics["val/mIoU"]) <= 1.0
    printed = capsys.readouterr().out
    assert "val (3 images)" in printed and "mIoU" in printed and "background" in printed


def test_predict_writes_masks_and_overlays(tmp_path, trained_checkpoint):
    checkpoint, data = trained_checkpoint
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (70, 50), (200, 30, 30)).save(images / "red.png")
    Image.new("L", (40, 60), 90).save(images / "gray.png")
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
    mask = Image.open(out / "red_mask.png")
    assert mask.mode == "P" and mask.size == (70, 50)
    assert np.array(mask).max() < 5
    assert Image.open(out / "gray_overlay.jpg").size == (40, 60)


def test_checkpoint_with_another_class_count_is_refused(tmp_path, trained_checkpoint):
    checkpoint, _ = trained_checkpoint
    voc = ["--data.format", "voc", "--data.root", str(write_voc_segmentation(tmp_path / "voc"))]
    with pytest.raises(ValueError, match=r"trained with num_classes=\d+, this run has num_classes=21"):
        run(tmp_path, "validate", "--ckpt_path", str(checkpoint), *voc)


@pytest.mark.parametrize(
    "recipe", sorted((Path(__file__).parents[3] / "configs" / "segment").glob("*.yaml")), ids=lambda p: p.stem
)
def test_recipes_parse(recipe, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(recipe), "--print_config"])
    assert exit_info.value.code in (0, None)
    assert "head:" in capsys.readouterr().out
