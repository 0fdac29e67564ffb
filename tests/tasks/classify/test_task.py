"""ClassificationTask's pieces: MixUp/CutMix targets, the frozen backbone, the EMA of the weights."""

import pytest
import torch
import torch.nn.functional as F

from tasks.classify.model import build_mixing
from tasks.classify.task import ClassificationTask


def small_task(**kwargs) -> ClassificationTask:
    return ClassificationTask(backbone="v3_small", num_classes=4, width=0.5, **kwargs)


def test_no_mixing_by_default_and_soft_targets_when_on():
    assert build_mixing(0.0, 0.0, 4) is None
    mixing = build_mixing(0.2, 1.0, 4)
    images, labels = torch.rand(6, 3, 16, 16), torch.tensor([0, 1, 2, 3, 0, 1])
    mixed, targets = mixing(images, labels)
    assert mixed.shape == images.shape and targets.shape == (6, 4)
    assert torch.allclose(targets.sum(1), torch.ones(6))
    # one weight per batch between each item's class and its neighbour's (torchvision rolls the batch by one)
    own = F.one_hot(labels, 4).float()
    lam = targets[0, labels[0]]
    assert torch.allclose(targets, lam * own + (1 - lam) * own.roll(1, 0), atol=1e-6)
    with pytest.raises(ValueError, match="must be >= 0"):
        build_mixing(-1.0, 0.0, 4)


def test_training_step_takes_mixed_soft_targets():
    task = small_task(mixup_alpha=0.2, label_smoothing=0.1)
    loss = task.training_step((torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])), 0)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert task.model.backbone.stem.conv.weight.grad is not None


def test_frozen_backbone_keeps_weights_and_statistics():
    task = small_task(freeze_backbone=True)
    task.train()
    backbone = task.model.backbone
    assert not backbone.training and task.model.head.training
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    task.training_step((torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])), 0).backward()
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())  # running stats untouched
    assert all(p.grad is None for p in backbone.parameters())
    assert task.model.head.fc.weight.grad is not None


def test_option_errors_name_the_argument():
    with pytest.raises(ValueError, match="ema_decay must be in"):
        small_task(ema_decay=1.5)
    with pytest.raises(ValueError, match="label_smoothing"):
        small_task(label_smoothing=1.0)
    with pytest.raises(ValueError, match="class_names has 2 entries for num_classes=4"):
        small_task(class_names=["a", "b"])
