"""The classification CLI driven in-process through `main([...])` on tiny generated data."""

import csv
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
import torchvision

from tasks.classify.ema import EMAWithOwnNormStatistics, recompute_norm_statistics
from tasks.classify.task import main
from tasks.common.checkpointing import AtomicCheckpointIO
from tasks.common.task_checkpoint import load_task
from tests.helpers import QUIET_CPU_TRAINER, last_checkpoint_path, save_state_dict
from tests.tasks.classify.fixtures import write_image, write_image_folder

SMALL = [
    "--backbone",
    "v3_small",
    "--width",
    "0.5",
    "--resolution",
    "32",
    "--data.batch_size",
    "4",
    "--data.num_workers",
    "0",
    *QUIET_CPU_TRAINER,
]
CLASSES = {"n01440764": 3, "n02102040": 3, "n03000684": 2}


def run(tmp_path: Path, subcommand: str, *args: str):
    return main([subcommand, *SMALL, "--trainer.default_root_dir", str(tmp_path), *args])


def imagefolder(tmp_path: Path) -> list[str]:
    root = write_image_folder(tmp_path / "images", {"train": CLASSES, "val": {k: 1 for k in CLASSES}})
    return ["--data.format", "imagefolder", "--data.root", str(root)]


def synthetic(tmp_path: Path) -> list[str]:
    return [
        "--data.cache_dir",
        str(tmp_path / "cache"),
        "--data.synthetic_train_images",
        "16",
        "--data.synthetic_val_images",
        "8",
        "--data.synthetic_image_size",
        "40",
    ]


@pytest.mark.parametrize("data_format", ["synthetic", "imagefolder"])
def test_fast_dev_run_on_each_format(tmp_path, data_format):
    data = synthetic(tmp_path) if data_format == "synthetic" else imagefolder(tmp_path)
    cli = run(tmp_path, "fit", "--trainer.fast_dev_run", "1", *data)
    assert cli.model.hparams.num_classes == cli.datamodule.num_classes
    assert cli.model.class_names == cli.datamodule.class_names
    assert isinstance(cli.trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    if data_format == "imagefolder":
        assert cli.model.class_names == sorted(CLASSES)  # synset folder names kept as class names
    metrics = cli.trainer.callback_metrics
    assert 0.0 <= float(metrics["val/top1"]) <= float(metrics["val/top3" if data_format != "synthetic" else "val/top5"])


def test_resolution_sets_the_training_and_evaluation_size(tmp_path):
    cli = run(tmp_path, "fit", "--trainer.fast_dev_run", "1", "--resolution", "48", *imagefolder(tmp_path))
    assert cli.model.hparams.resolution == 48 and cli.datamodule.resolution == 48
    images, _ = next(iter(cli.datamodule.train_dataloader()))
    assert images.shape[-2:] == (48, 48)
    images, _ = next(iter(cli.datamodule.val_dataloader()))
    assert images.shape[-2:] == (48, 48)


class TrainedCheckpoint(NamedTuple):
    path: Path
    data: list[str]
    recent_images: list[torch.Tensor]  # the moving average's last training batches


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory) -> TrainedCheckpoint:
    tmp_path = tmp_path_factory.mktemp("classify-fit")
    data = imagefolder(tmp_path)
    cli = run(tmp_path, "fit", "--trainer.max_epochs", "1", "--model.ema_decay", "0.9", *data)
    (average,) = [c for c in cli.trainer.callbacks if isinstance(c, EMAWithOwnNormStatistics)]
    return TrainedCheckpoint(Path(last_checkpoint_path(cli.trainer)), data, list(average.recent_images))


def test_validate_prints_top1_and_top_k(tmp_path, trained_checkpoint, capsys):
    checkpoint, data, _ = trained_checkpoint
    cli = run(tmp_path, "validate", "--ckpt_path", str(checkpoint), *data)
    top1 = float(cli.trainer.callback_metrics["val/top1"])
    assert min(abs(top1 - k / 3) for k in range(4)) < 1e-6  # a count out of the 3 val images
    printed = capsys.readouterr().out
    assert "val (3 images)\ntop1 " in printed and "top3 " in printed


def test_ema_weights_are_the_checkpoints_model_with_their_own_norm_statistics(trained_checkpoint):
    checkpoint = torch.load(trained_checkpoint.path, map_location="cpu", weights_only=True)
    averaged, current = checkpoint["state_dict"], checkpoint["current_model_state"]
    key = "model.head.fc.weight"
    assert not torch.equal(averaged[key], current[key])  # the average lags the trained weights
    # the norms hold the statistics of the averaged weights on the last training batches, not the trained model's
    model = load_task("classify", trained_checkpoint.path).module.model
    recompute_norm_statistics(model, trained_checkpoint.recent_images)
    recomputed = {f"model.{name}": value for name, value in model.named_buffers() if "running_" in name}
    assert recomputed
    for name, value in recomputed.items():
        assert (averaged[name] - value).abs().max() <= 1e-5 * value.abs().max(), name
    assert any(not torch.allclose(averaged[name], current[name], rtol=0.01) for name in recomputed)


def test_predict_writes_a_csv_of_the_top_classes(tmp_path, trained_checkpoint):
    checkpoint, data, _ = trained_checkpoint
    folder = tmp_path / "unlabelled"
    write_image(folder / "a.png", (200, 30, 30))
    write_image(folder / "sub" / "b.jpg", (30, 30, 200), size=50, width=70)
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    run(
        tmp_path,
        "predict",
        "--ckpt_path",
        str(checkpoint),
        "--data.predict_root",
        str(folder),
        "--model.predict_dir",
        str(out),
        *data,
    )
    with (out / "predictions.csv").open() as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["path", "class_1", "score_1", "class_2", "score_2", "class_3", "score_3"]
    assert [Path(r[0]).name for r in rows[1:]] == ["a.png", "b.jpg"]
    for row in rows[1:]:
        assert sorted(row[1::2]) == sorted(CLASSES)  # all three classes ranked
        scores = [float(s) for s in row[2::2]]
        assert scores == sorted(scores, reverse=True) and sum(scores) == pytest.approx(1.0, abs=1e-4)


def test_checkpoint_with_another_class_count_is_refused(tmp_path, trained_checkpoint):
    checkpoint, *_ = trained_checkpoint
    with pytest.raises(ValueError, match=r"trained with num_classes=3, this run has num_classes=8"):
        run(tmp_path, "validate", "--ckpt_path", str(checkpoint), "--data.format", "synthetic", *synthetic(tmp_path))


def test_validate_from_a_checkpoint_needs_no_other_flag(tmp_path, trained_checkpoint, capsys):
    checkpoint, *_ = trained_checkpoint  # v3_small, width 0.5, resolution 32, on an image folder
    quiet = ["--trainer.logger", "false", "--trainer.enable_progress_bar", "false"]
    cli = main(["validate", "--ckpt_path", str(checkpoint), "--trainer.default_root_dir", str(tmp_path), *quiet])
    hparams = cli.model.hparams
    assert (hparams.backbone, hparams.width, hparams.resolution) == ("v3_small", 0.5, 32)
    assert cli.model.class_names == sorted(CLASSES) and cli.datamodule.resolution == 32
    assert "val (3 images)\ntop1 " in capsys.readouterr().out


def test_a_flag_that_contradicts_the_checkpoint_is_one_line(tmp_path, trained_checkpoint):
    checkpoint, *_ = trained_checkpoint
    with pytest.raises(SystemExit) as exit_info:
        main(["validate", "--ckpt_path", str(checkpoint), "--backbone", "v3_large", "--trainer.logger", "false"])
    message = str(exit_info.value.code)
    assert message.startswith("error: --backbone v3_large contradicts the checkpoint") and "\n" not in message
    assert "backbone='v3_small'" in message


def test_fine_tuning_from_a_torchvision_checkpoint(tmp_path, caplog):
    reference = torchvision.models.mobilenet_v3_small(width_mult=0.5)
    path = save_state_dict(reference, tmp_path / "tv.pth")
    with caplog.at_level("WARNING", logger="backbones.weights"):
        cli = run(
            tmp_path,
            "fit",
            "--trainer.fast_dev_run",
            "1",
            "--model.weights",
            str(path),
            "--model.freeze_backbone",
            "true",
            *imagefolder(tmp_path),
        )
    assert "replaced by a new, randomly initialised one" in caplog.text  # 1000 classes -> 3
    backbone = cli.model.model.backbone
    assert torch.equal(backbone.stem.conv.weight, reference.features[0][0].weight)  # frozen: unchanged
    assert all(not p.requires_grad for p in backbone.parameters())
    cli.model.train()
    assert not backbone.training and cli.model.model.head.training  # frozen batch-norm statistics too


@pytest.mark.parametrize(
    "recipe", sorted((Path(__file__).parents[3] / "configs" / "classify").glob("*.yaml")), ids=lambda p: p.stem
)
def test_recipes_parse(recipe, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(recipe), "--print_config"])
    assert exit_info.value.code in (0, None)
    assert "optimizer:" in capsys.readouterr().out
