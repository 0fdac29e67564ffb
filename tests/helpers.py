"""Helpers the tests share: reference models with non-trivial batch-norm statistics saved as a user's downloaded
checkpoints would be, and tiny task checkpoints written as Lightning writes them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from torch import nn

from tasks.classify.data.module import ClassificationDataModule
from tasks.classify.task import ClassificationTask
from tasks.common.predictor import load_task
from tasks.detect.data.module import DetectionDataModule
from tasks.detect.task import DetectionTask
from tasks.segment.data.module import SegmentationDataModule
from tasks.segment.task import SegmentationTask

# the trainer flags of every in-process CLI test: CPU, no loggers, no progress bar
QUIET_CPU_TRAINER = ["--trainer.accelerator", "cpu", "--trainer.logger", "false"]
QUIET_CPU_TRAINER += ["--trainer.enable_progress_bar", "false"]


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


# float32 parity with a reference model: |ours - theirs| <= PARITY * max|theirs|. Summation order differs between
# implementations and memory layouts (measured up to 1.5e-6 of the scale), while one wrong batch-norm eps (1e-5 for
# 1e-3) moves V3's logits by ~1e-3 of their scale: an absolute tolerance on logits of ~0.05 could not tell them apart.
PARITY = 1e-5


def assert_parity(ours: torch.Tensor, reference: torch.Tensor) -> None:
    """`ours` equals `reference` up to float32 summation order, relative to the reference's largest magnitude."""
    scale = float(reference.abs().max())
    assert scale > 0, "a comparison with an all-zero reference proves nothing"
    torch.testing.assert_close(ours, reference, rtol=PARITY, atol=PARITY * scale)


def with_measured_statistics(detector: nn.Module, images: torch.Tensor) -> nn.Module:
    """`detector` (an SSDLite) in eval mode, its batch norms holding the mean and variance of their inputs on `images`
    (the affine terms stay). With `randomize_norms`' statistics alone, the activations drift until the detections no
    longer depend on the image, nor on the early layers: a broken fold or int8 model would give the same detections."""
    return with_batch_statistics(detector, images, lambda x: detector.head(detector.backbone(x)))


def with_batch_statistics(model: nn.Module, images: torch.Tensor, forward: Callable | None = None) -> nn.Module:
    """`model` in eval mode, its batch norms holding the mean and variance of their inputs on `images`, as run by
    `forward` (default: the model itself) in train mode."""
    for norm in (module for module in model.modules() if isinstance(module, nn.BatchNorm2d)):
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average: the statistics of this one batch
    model.train()
    with torch.no_grad():
        (forward or model)(images)
    return model.eval()


def save_state_dict(model: nn.Module, path: Path) -> Path:
    torch.save(model.state_dict(), path)
    return path


SIZE = 64


def tiny_task(task: str, cache: Path, backbone: str = "v3_small") -> tuple[Any, Any]:
    """(LightningModule with random batch-norm statistics, data module on tiny synthetic data) for one task."""
    if task == "classify":
        module = ClassificationTask(backbone, 8, width=0.5, resolution=SIZE)
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
        module = SegmentationTask(backbone, "lraspp", 5, width=0.5)
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
        module = DetectionTask(backbone, 5, width=0.5, image_size=SIZE)
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


def last_checkpoint_path(trainer: Any) -> str:
    """The path of the run's last.ckpt (written by `LastCheckpoint`)."""
    return next(cb.last_model_path for cb in trainer.checkpoint_callbacks if cb.last_model_path)


def write_noise_images(folder: Path, sizes: list[tuple[int, int]], seed: int = 0) -> list[Path]:
    """Lossless PNGs, one per (height, width), named 0.png, 1.png, ...: noise over a left-to-right ramp of a random
    colour, so that images differ in content and where they are cropped matters."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, (height, width) in enumerate(sizes):
        path = folder / f"{index}.png"
        ramp = np.linspace(0.0, 1.0, width)[None, :, None] * rng.integers(0, 256, 3)
        pixels = (rng.integers(0, 256, (height, width, 3)) + ramp) / 2
        Image.fromarray(pixels.astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def predictor_checkpoint(
    task: str, folder: Path, edit: Callable[[Any], None] | None = None, **data_overrides: Any
) -> tuple[Path, Any]:
    """A tiny `task` checkpoint whose data module records `data_overrides` (e.g. its preprocessing), its module
    changed first by `edit`; and that data module."""
    module, data = tiny_task(task, folder / "cache")
    if edit is not None:
        with torch.no_grad():
            edit(module)
    data = type(data)(**{**dict(data.hparams), **data_overrides})
    return write_checkpoint(folder / f"{task}.ckpt", module, data), data


def datamodule_predictions(task: str, checkpoint: Path, data: Any, images: Path, output: Path) -> list[dict[str, Any]]:
    """`Trainer.predict` of the checkpoint's task on a data module like `data` reading the folder `images`: the
    `python -m tasks.<task> predict` path (batch norm folded in `on_predict_start`, the task's writer writing into
    `output`); one item per image."""
    module = load_task(task, checkpoint).module
    datamodule = type(data)(**{**dict(data.hparams), "predict_root": str(images), "num_workers": 0})
    module.predict_dir = str(output)
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    return [item for batch in trainer.predict(module, datamodule=datamodule) for item in batch]


def annotated_video(
    predictor: Any, folder: Path, suffix: str = ".mp4"
) -> tuple[Any, list[np.ndarray], list[np.ndarray]]:
    """`predictor.predict_video` on a 5-frame 72 x 56 mp4v video: (its result, the frames written, the source's)."""
    source = write_video(folder / "in.mp4", frames=5)
    result = predictor.predict_video(source, folder / "out" / f"annotated{suffix}", batch_size=2)
    return result, read_video(result.output), read_video(source)


def write_video(path: Path, frames: int = 5, size: tuple[int, int] = (72, 56), fps: float = 5.0) -> Path:
    """An mp4v video of `frames` noise frames of size (width, height), written with OpenCV."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    writer.release()
    return path


def read_video(path: Path) -> list[np.ndarray]:
    """Every frame of a video, as OpenCV decodes it (BGR)."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def png_pixels(path: Path) -> np.ndarray:
    """The PNG at `path` as RGB uint8, after checking that Pillow opens it and that it is not blank (many colours,
    not one flat fill)."""
    with Image.open(path) as image:
        assert image.format == "PNG", f"{path} is {image.format}, not a PNG"
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[0] > 50 and pixels.shape[1] > 50, f"{path} is only {pixels.shape[1]}x{pixels.shape[0]}"
    assert pixels.std() > 5 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20, f"{path} is blank"
    return pixels


def validated_figures(task: str, folder: Path, **attributes: Any) -> tuple[Any, Any, dict[str, float], dict[str, Any]]:
    """(module, data, logged metrics, figures) of one `validate` pass of `tiny_task(task)` (`attributes` set on the
    module first); the module had no figures before, and each figure is saved into `folder` and checked by
    `png_pixels`."""
    module, data = tiny_task(task, folder / "cache")
    assert module.validation_figures() == {}  # nothing evaluated yet
    for name, value in attributes.items():
        setattr(module, name, value)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=folder)
    (logged,) = trainer.validate(module, datamodule=data, verbose=False)
    figures = module.validation_figures()
    for name, figure in figures.items():
        figure.savefig(folder / f"{name}.png")
        png_pixels(folder / f"{name}.png")
    return module, data, logged, figures
