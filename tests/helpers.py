"""Helpers the tests share: reference models with non-trivial batch-norm statistics saved as a user's downloaded
checkpoints would be, and tiny task checkpoints written as Lightning writes them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from tasks.classify.data.module import ClassificationDataModule
from tasks.classify.task import ClassificationTask
from tasks.detect.data.module import DetectionDataModule
from tasks.detect.task import DetectionTask
from tasks.segment.data.module import SegmentationDataModule
from tasks.segment.task import SegmentationTask


def randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine terms, so that eps and key maps matter."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                size = module.num_features
                module.running_mean.copy_(torch.rand(size, generator=generator) - 0.5)
                module.running_var.copy_(torch.rand(size, generator=generator) * 1.5 + 0.5)
                module.weight.copy_(torch.rand(size, generator=generator) + 0.5)
                module.bias.copy_(torch.rand(size, generator=generator) - 0.5)
    return model.eval()


def save_state_dict(model: nn.Module, path: Path) -> Path:
    torch.save(model.state_dict(), path)
    return path


SIZE = 64


def tiny_task(task: str, cache: Path) -> tuple[Any, Any]:
    """(LightningModule with random batch-norm statistics, data module on tiny synthetic data) for one task."""
    if task == "classify":
        module = ClassificationTask("v3_small", 8, width=0.5, resolution=SIZE)
        data = ClassificationDataModule(
            resolution=SIZE,
            synthetic_train_images=16,
            synthetic_val_images=8,
            synthetic_image_size=SIZE + 8,
            num_workers=0,
            eval_batch_size=4,
            cache_dir=str(cache),
        )
    elif task == "segment":
        module = SegmentationTask("v3_small", "lraspp", 5, width=0.5)
        data = SegmentationDataModule(
            crop_size=SIZE,
            base_size=SIZE,
            synthetic_train_images=6,
            synthetic_val_images=3,
            synthetic_image_size=SIZE,
            num_workers=0,
            cache_dir=str(cache),
        )
    elif task == "detect":
        module = DetectionTask("v3_small", 5, width=0.5, image_size=SIZE)
        data = DetectionDataModule(
            image_size=SIZE,
            synthetic_train_images=8,
            synthetic_val_images=4,
            synthetic_image_size=SIZE,
            batch_size=2,
            num_workers=0,
            cache_dir=str(cache),
        )
    else:
        raise ValueError(task)
    randomize_norms(module)
    return module, data


def write_checkpoint(path: Path, module: Any, data: Any | None, **hparams_override: Any) -> Path:
    """A checkpoint with `state_dict`, `hyper_parameters` and `datamodule_hyper_parameters`, as Lightning's."""
    checkpoint = {
        "pytorch-lightning_version": pl.__version__,
        "state_dict": module.state_dict(),
        "hyper_parameters": {**dict(module.hparams), **hparams_override},
    }
    if data is not None:
        checkpoint["datamodule_hyper_parameters"] = dict(data.hparams)
    torch.save(checkpoint, path)
    return path
