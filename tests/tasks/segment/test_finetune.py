"""Fine-tuning a segmenter to another class count: every layer loads but the final class convolutions
(`class_layers`), which keep torchvision's default initialisation and are named in one log line; any other misfit
stays an error."""

from __future__ import annotations

import logging
import math

import pytest
import torch
import torch.nn.functional as F
import torchvision

from tasks.segment.model import build_segmenter
from tasks.segment.task import SegmentationTask
from tests.helpers import randomize_norms, write_checkpoint
from tests.tasks.segment.test_cli import run, synthetic

LOGGER = "backbones.weights"
NUM_CLASSES = 3
# the last 1x1 convolutions: LR-ASPP's two classifiers; DeepLabHead's and FCNHead's final conv (index 4)
CLASS_LAYERS = {
    "lraspp": ("head.low_classifier", "head.high_classifier"),
    "deeplabv3": ("head.classifier.4", "head.aux_classifier.4"),
}


def replacement_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith(LOGGER) and "another class count" in r.getMessage()]


def train_step(model) -> None:
    model.train()
    outputs = model(torch.randn(2, 3, 64, 64))
    masks = torch.randint(0, NUM_CLASSES, (2, 64, 64))
    loss = sum(F.cross_entropy(logits, masks) for logits in outputs.values())
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize(
    "arch, head, aux",
    [("lraspp_mobilenet_v3_large", "lraspp", False), ("deeplabv3_mobilenet_v3_large", "deeplabv3", True)],
)
def test_torchvision_layout_fine_tunes_to_another_class_count(tmp_path, caplog, arch, head, aux):
    kwargs = {"aux_loss": aux} if head == "deeplabv3" else {}
    source = randomize_norms(
        torchvision.models.get_model(arch, weights=None, weights_backbone=None, num_classes=21, **kwargs)
    )
    path = tmp_path / f"{arch}.pth"
    torch.save(source.state_dict(), path)
    with caplog.at_level("INFO", logger=LOGGER):
        ours = build_segmenter("v3_large", head, NUM_CLASSES, aux_loss=aux, weights=path)
    (record,) = replacement_records(caplog)
    message = record.getMessage()
    assert message.startswith(f"{path}: the 2 class layers have another class count than this model's")
    layers = CLASS_LAYERS[head]
    state = ours.state_dict()
    for layer in layers:
        inputs = state[f"{layer}.weight"].shape[1]
        assert f"{layer}.weight (21, {inputs}, 1, 1) -> ({NUM_CLASSES}, {inputs}, 1, 1)" in message
        assert f"{layer}.bias (21,) -> ({NUM_CLASSES},)" in message
    assert message.count(" -> ") == 4

    # everything else is the checkpoint's: the same as the exact 21-class load, and spot checks against torchvision
    exact = build_segmenter("v3_large", head, 21, aux_loss=aux, weights=path).state_dict()
    kept = [key for key in state if not key.startswith(tuple(f"{layer}." for layer in layers))]
    assert len(kept) == len(state) - 4
    assert all(torch.equal(state[key], exact[key]) for key in kept)
    theirs = source.state_dict()
    assert torch.equal(state["backbone.stem.conv.weight"], theirs["backbone.0.0.weight"])
    if head == "lraspp":
        assert torch.equal(state["head.cbr.1.running_var"], theirs["classifier.cbr.1.running_var"])
    else:
        assert torch.equal(state["head.classifier.1.weight"], theirs["classifier.1.weight"])  # the 3x3 after ASPP
        assert torch.equal(state["head.aux_classifier.0.weight"], theirs["aux_classifier.0.weight"])

    # the class layers are new, initialised as torchvision leaves them: nn.Conv2d's default, U(-1/sqrt(fan_in), ..)
    for layer in layers:
        weight, bias = state[f"{layer}.weight"], state[f"{layer}.bias"]
        bound = 1 / math.sqrt(weight.shape[1])
        assert weight.abs().max() <= bound and bias.abs().max() <= bound
        assert 0.75 < weight.std().item() / (bound / math.sqrt(3)) < 1.25
    train_step(ours)


def test_our_checkpoint_without_aux_fine_tunes_the_final_layer(tmp_path, caplog):
    source = randomize_norms(build_segmenter("v3_small", "deeplabv3", 5, width=0.5))
    torch.save(source.state_dict(), tmp_path / "five.pth")
    with caplog.at_level("INFO", logger=LOGGER):
        ours = build_segmenter("v3_small", "deeplabv3", NUM_CLASSES, width=0.5, weights=tmp_path / "five.pth")
    (record,) = replacement_records(caplog)
    assert record.getMessage() == (
        f"{tmp_path / 'five.pth'}: the final layer has another class count than this model's; it is replaced by a "
        "new, randomly initialised one (head.classifier.4.weight (5, 256, 1, 1) -> (3, 256, 1, 1); "
        "head.classifier.4.bias (5,) -> (3,))"
    )
    state, theirs = ours.state_dict(), source.state_dict()
    assert all(torch.equal(state[key], theirs[key]) for key in state if not key.startswith("head.classifier.4."))


@pytest.mark.parametrize(
    "key, shape",
    [
        ("head.cbr.0.weight", (64, 48, 1, 1)),  # not a class layer
        ("head.low_classifier.weight", (5, 7, 1, 1)),  # a class layer whose input width differs too
    ],
)
def test_any_other_misfit_is_still_the_named_error(tmp_path, key, shape):
    state = build_segmenter("v3_small", "lraspp", 5, width=0.5).state_dict()
    state[key] = torch.zeros(shape)
    torch.save(state, tmp_path / "odd.pth")
    with pytest.raises(RuntimeError, match=rf"(?s)odd.pth does not fit .*shape mismatches \(1\): \['{key}: "):
        build_segmenter("v3_small", "lraspp", NUM_CLASSES, width=0.5, weights=tmp_path / "odd.pth")


def test_named_deeplabv3_weights_without_aux_is_one_clear_error_before_any_download(monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("the check must come before the download")

    monkeypatch.setattr("backbones.weights.download.download_weights", no_download)
    with pytest.raises(ValueError) as error:
        build_segmenter("v3_large", "deeplabv3", 21, weights="coco_voc")
    assert str(error.value) == (
        "weights 'coco_voc' of deeplabv3_v3_large (torchvision's) need aux_loss=True; this model has aux_loss=False: "
        "pass aux_loss=True (--model.aux_loss true)"
    )


def test_cli_fit_with_a_task_checkpoint_of_another_class_count(tmp_path, caplog):
    """`python -m tasks.segment fit --model.weights <a 3-class Lightning checkpoint>` on the 5-class synthetic data."""
    trained = randomize_norms(SegmentationTask("v3_small", "lraspp", 3, width=0.5))
    path = write_checkpoint(tmp_path / "three.ckpt", trained, None)
    with caplog.at_level("INFO", logger=LOGGER):
        cli = run(tmp_path, "fit", "--trainer.fast_dev_run", "1", "--model.weights", str(path), *synthetic(tmp_path))
    (record,) = replacement_records(caplog)
    assert record.getMessage().startswith(f"{path}: the 2 class layers have another class count")
    assert "head.low_classifier.weight (3, 16, 1, 1) -> (5, 16, 1, 1)" in record.getMessage()
    assert cli.model.model.head.high_classifier.out_channels == 5
