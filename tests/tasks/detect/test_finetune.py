"""Fine-tuning a detector to another class count: every layer loads but the class predictors (`class_layers`),
which keep torchvision's fresh initialisation and are named in one log line; any other misfit stays an error."""

from __future__ import annotations

import logging
import sys

import pytest
import torch
import torchvision

from tasks.detect.model import build_detector
from tasks.detect.task import DetectionTask
from tests.helpers import randomize_norms, write_checkpoint
from tests.tasks.detect.test_cli import run, synthetic

NUM_CLASSES = 5  # 4 classes and the background
LOGGER = "backbones.weights"
CLASS_LAYERS = [f"head.classification.{level}.1" for level in range(6)]  # the last 1x1 conv of each level's block


def replacement_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith(LOGGER) and "another class count" in r.getMessage()]


def is_class_layer(key: str) -> bool:
    return key.startswith(tuple(f"{layer}." for layer in CLASS_LAYERS))


def train_step(model) -> None:
    """One loss backward on two 128 px images; the new class layers get gradients."""
    model.train()
    images = torch.randn(2, 3, 128, 128)
    boxes = torch.tensor([[10.0, 12.0, 70.0, 80.0], [40.0, 30.0, 120.0, 110.0]])
    targets = [{"boxes": boxes, "labels": torch.tensor([1, 4])}, {"boxes": boxes[:1], "labels": torch.tensor([2])}]
    losses = model(images, targets)
    loss = sum(losses.values())
    assert torch.isfinite(loss)
    loss.backward()
    assert model.head.classification[0][1].weight.grad.abs().sum() > 0


def test_torchvision_coco_layout_fine_tunes_to_another_class_count(tmp_path, caplog):
    source = randomize_norms(
        torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=91)
    )
    path = tmp_path / "ssdlite91.pth"
    torch.save(source.state_dict(), path)
    with caplog.at_level("INFO", logger=LOGGER):
        ours = build_detector("v3_large", NUM_CLASSES, reduced_tail=True, weights=path)
    # one line names every replaced key with both shapes: 6 levels x (weight, bias), 6 anchors per location
    (record,) = replacement_records(caplog)
    message = record.getMessage()
    assert message.startswith(f"{path}: the 6 class layers have another class count than this model's")
    for level, channels in enumerate((672, 480, 512, 256, 256, 128)):
        key = f"head.classification.{level}.1"
        assert f"{key}.weight (546, {channels}, 1, 1) -> ({NUM_CLASSES * 6}, {channels}, 1, 1)" in message
        assert f"{key}.bias (546,) -> ({NUM_CLASSES * 6},)" in message
    assert "regression" not in message and "extra" not in message and "backbone" not in message

    # everything else is the checkpoint's: the same as the exact 91-class load, and spot checks against torchvision
    exact = build_detector("v3_large", 91, reduced_tail=True, weights=path).state_dict()
    state = ours.state_dict()
    kept = [key for key in state if not is_class_layer(key)]
    assert len(kept) == len(state) - 12
    assert all(torch.equal(state[key], exact[key]) for key in kept)
    theirs = source.state_dict()
    assert torch.equal(state["backbone.stem.conv.weight"], theirs["backbone.features.0.0.0.weight"])
    assert torch.equal(state["head.extra.0.0.conv.weight"], theirs["backbone.extra.0.0.0.weight"])
    assert torch.equal(state["head.extra.3.2.norm.running_var"], theirs["backbone.extra.3.2.1.running_var"])
    for level in range(6):
        for part in ("weight", "bias"):
            key = f"head.regression_head.module_list.{level}.1.{part}"
            assert torch.equal(state[f"head.regression.{level}.1.{part}"], theirs[key])
        assert torch.equal(  # the class prediction block's depthwise part is not class-dependent: it loads
            state[f"head.classification.{level}.0.conv.weight"],
            theirs[f"head.classification_head.module_list.{level}.0.0.weight"],
        )

    # the class layers are new, initialised as torchvision's SSDLiteClassificationHead: normal(0, 0.03), bias 0
    weights = torch.cat([ours.head.classification[level][1].weight.flatten() for level in range(6)])
    biases = torch.cat([ours.head.classification[level][1].bias for level in range(6)])
    assert ours.head.classification[0][1].weight.shape == (NUM_CLASSES * 6, 672, 1, 1)
    assert 0.029 < weights.std().item() < 0.031 and abs(weights.mean().item()) < 0.001
    assert torch.equal(biases, torch.zeros_like(biases))
    train_step(ours)


def test_our_checkpoint_of_another_class_count_fine_tunes(tmp_path, caplog):
    source = randomize_norms(build_detector("v3_small", 3, width=0.5))
    path = tmp_path / "ours3.pth"
    torch.save(source.state_dict(), path)
    with caplog.at_level("INFO", logger=LOGGER):
        ours = build_detector("v3_small", NUM_CLASSES, width=0.5, weights=path)
    (record,) = replacement_records(caplog)
    assert "head.classification.0.1.weight (18, 144, 1, 1) -> (30, 144, 1, 1)" in record.getMessage()
    state, theirs = ours.state_dict(), source.state_dict()
    assert all(torch.equal(state[key], theirs[key]) for key in state if not is_class_layer(key))
    assert all(state[key].shape[0] == NUM_CLASSES * 6 for key in state if is_class_layer(key))
    train_step(ours)


@pytest.mark.parametrize(
    "key, shape",
    [
        ("head.regression.0.1.weight", (99, 144, 1, 1)),  # not a class layer
        ("head.classification.0.1.weight", (18, 100, 1, 1)),  # a class layer whose input width differs too
        ("head.classification.0.0.conv.weight", (100, 1, 3, 3)),  # the class-independent part of a class block
    ],
)
def test_any_other_misfit_is_still_the_named_error(tmp_path, key, shape):
    state = build_detector("v3_small", 3, width=0.5).state_dict()
    state[key] = torch.zeros(shape)
    torch.save(state, tmp_path / "odd.pth")
    with pytest.raises(RuntimeError, match=rf"(?s)odd.pth does not fit .*shape mismatches \(1\): \['{key}: "):
        build_detector("v3_small", NUM_CLASSES, width=0.5, weights=tmp_path / "odd.pth")


def test_resuming_a_checkpoint_of_another_class_count_stays_strict(tmp_path):
    """`--ckpt_path` goes through Lightning's strict load and the task's architecture check, not the fine-tuning
    path: another class count is the named error there."""
    trained = DetectionTask("v3_small", 3, width=0.5, image_size=96)
    path = write_checkpoint(tmp_path / "three.ckpt", trained, None)
    checkpoint = torch.load(path, weights_only=True)
    task = DetectionTask("v3_small", NUM_CLASSES, width=0.5, image_size=96)
    with pytest.raises(ValueError, match=r"trained with num_classes=3, this run has num_classes=5"):
        task.on_load_checkpoint(checkpoint)
    with pytest.raises(RuntimeError, match="size mismatch for model.head.classification.0.1.weight"):
        task.load_state_dict(checkpoint["state_dict"])


def test_named_coco_weights_without_reduced_tail_is_one_clear_error_before_any_download(tmp_path, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("the check must come before the download")

    monkeypatch.setattr("backbones.weights.download.download_weights", no_download)
    expected = (
        "weights 'coco' of ssdlite320_v3_large (torchvision's) need reduced_tail=True; this model has "
        "reduced_tail=False: pass reduced_tail=True (--model.reduced_tail true)"
    )
    with pytest.raises(ValueError) as error:
        build_detector("v3_large", 91, weights="coco")
    assert str(error.value) == expected
    coco = ["--backbone", "v3_large", "--width", "1.0", "--model.weights", "coco"]
    with pytest.raises(ValueError) as error:  # the CLI driven from Python, at the model's instantiation
        run(tmp_path, "fit", *coco, *synthetic(tmp_path))
    assert str(error.value) == expected
    from tasks.detect.task import main

    command = ["tasks.detect", "fit", *coco, *synthetic(tmp_path), "--trainer.default_root_dir", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", command)
    with pytest.raises(SystemExit) as exit_info:  # the command line: one error line
        main()
    assert exit_info.value.code == f"error: {expected}"


def test_cli_fit_with_a_task_checkpoint_of_another_class_count(tmp_path, caplog):
    """`python -m tasks.detect fit --model.weights <a 3-class Lightning checkpoint>` on the 4-class synthetic data."""
    trained = randomize_norms(DetectionTask("v3_small", 3, width=0.5, image_size=96))
    path = write_checkpoint(tmp_path / "three.ckpt", trained, None)
    with caplog.at_level("INFO", logger=LOGGER):
        cli = run(tmp_path, "fit", "--trainer.fast_dev_run", "1", "--model.weights", str(path), *synthetic(tmp_path))
    (record,) = replacement_records(caplog)
    assert record.getMessage().startswith(f"{path}: the 6 class layers have another class count")
    model = cli.model.model
    assert cli.model.hparams.num_classes == NUM_CLASSES and model.head.classification[0][1].out_channels == 30
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])
    # one AdamW step (lr <= 2e-3) from the checkpoint's weights, not from a fresh initialisation
    start = trained.model.head.regression[0][1].weight
    assert (model.head.regression[0][1].weight - start).abs().max() < 0.01
