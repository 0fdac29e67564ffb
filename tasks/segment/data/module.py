"""The semantic-segmentation LightningDataModule (synthetic shapes, Pascal VOC, COCO as VOC classes) and collate.

`num_classes`, `class_names` and `ignore_index` work before `setup()` without touching the disk (LightningCLI
links them into the model at construction). Train items are fixed crop_size x crop_size crops; val/test items
are whole images at their original size, so the val/test loaders use `eval_batch_size` (default 1: each image
alone, exactly as it is); larger eval batches are padded by `collate_segmentation` to the largest image with
ignore (255) in the mask, so padding never counts in a loss or metric (predictions near the padded bottom/right
edges may still differ slightly from single-image evaluation, as the padded context reaches them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F

from tasks.common.categories import VOC_CLASS_NAMES
from tasks.common.datamodule import TaskDataModule, check_source
from tasks.segment.data.formats.coco import CocoSegmentation
from tasks.segment.data.formats.voc import VocSegmentation, read_voc_split, resolve_voc_root
from tasks.segment.data.masks import SegmentationDataset, SegmentationPredictImages
from tasks.segment.data.synthetic import SEGMENTATION_CLASS_NAMES, ensure_synthetic_segmentation
from tasks.segment.data.transforms import (
    IGNORE_INDEX,
    SegmentationEvalTransform,
    SegmentationTrainTransform,
    scaled_sides,
)

SegmentationFormat = Literal["synthetic", "voc", "coco"]
SEGMENTATION_FORMATS: tuple[str, ...] = get_args(SegmentationFormat)


def _pad_to(tensor: torch.Tensor, height: int, width: int, value: float) -> torch.Tensor:
    """Pad the last two dimensions at the bottom/right up to height x width."""
    return F.pad(tensor, (0, width - tensor.shape[-1], 0, height - tensor.shape[-2]), value=value)


def collate_segmentation(
    batch: list[tuple[torch.Tensor, Any]],
) -> tuple[torch.Tensor, torch.Tensor | list[dict[str, Any]]]:
    """Stack (image, mask) items to ([B, 3, H, W], [B, H, W]); (image, meta) predict items to (images, [metas]).

    Items of different sizes are padded at the bottom/right to the largest height and width: images with 0
    (the mean after normalising), masks with IGNORE_INDEX, so the padding is ignored by losses and metrics.
    """
    images, seconds = zip(*batch, strict=True)
    height = max(image.shape[-2] for image in images)
    width = max(image.shape[-1] for image in images)
    stacked = torch.stack([_pad_to(image, height, width, 0.0) for image in images])
    if isinstance(seconds[0], torch.Tensor):
        return stacked, torch.stack([_pad_to(mask, height, width, IGNORE_INDEX) for mask in seconds])
    return stacked, list(seconds)


class SegmentationDataModule(TaskDataModule):
    """Semantic-segmentation data for the DeepLabV3 / LR-ASPP task.

    Args:
        format: "synthetic" (generated once into `cache_dir` in VOC layout, then read as VOC), "voc" or "coco".
        root: dataset folder (None only for synthetic). VOC: a year folder (JPEGImages/, SegmentationClass/,
            ImageSets/Segmentation/) or a VOCdevkit folder holding VOC2012/. COCO: annotations/instances_<split>.json
            with images in <split>/; its 20 VOC categories become labels 1..20, everything else background.
        train_split, val_split: split names; test_split None means the val split.
        extra_train_split: VOC only, an extra list in ImageSets/Segmentation/ joined to the training split (e.g.
            the SBD "train_aug"; masks from SegmentationClassAug/ when present); val images in it are left out.
        predict_root: a folder of images for `predict` (original size, batch 1).
        crop_size, base_size, scale_range: training crops; the shorter side is resized to base_size x
            U(scale_range), padded (mask with 255) up to crop_size, cropped and flipped.
        batch_size: training batch size. eval_batch_size: val/test batch size (see the module docstring).
        mean, std: normalisation, in 0-1 RGB units.
        skip_bad_samples: False: a bad sample (missing/unreadable file, mask size or labels wrong) is an error
            naming the file; True: it is logged, counted in `dataset.skipped_samples` and replaced by the next one.
        synthetic_*: size of the generated dataset; cache_dir defaults to $MOBILENET_SUITE_CACHE or
            ~/.cache/mobilenet-suite.
    """

    collate = staticmethod(collate_segmentation)
    predict_batch_size = 1  # images of different sizes, each at its own size

    def __init__(
        self,
        format: SegmentationFormat = "synthetic",
        root: str | None = None,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str | None = None,
        extra_train_split: str | None = None,
        predict_root: str | None = None,
        crop_size: int = 256,
        base_size: int = 256,
        scale_range: tuple[float, float] = (0.5, 2.0),
        batch_size: int = 8,
        eval_batch_size: int = 1,
        num_workers: int = 2,
        mean: tuple[float, float, float] = (0.485, 0.456, 0.406),
        std: tuple[float, float, float] = (0.229, 0.224, 0.225),
        skip_bad_samples: bool = False,
        synthetic_train_images: int = 600,
        synthetic_val_images: int = 100,
        synthetic_image_size: int = 256,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        check_source(format, SEGMENTATION_FORMATS, root, train_split, val_split, test_split)
        if extra_train_split is not None and format != "voc":
            raise ValueError(f"extra_train_split is for format='voc' only (got format={format!r})")
        for name, value in (
            ("crop_size", crop_size),
            ("batch_size", batch_size),
            ("eval_batch_size", eval_batch_size),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        scaled_sides(base_size, tuple(scale_range))  # validates base_size and scale_range now, not at setup
        self.save_hyperparameters()
        self.format = format
        self.root = root
        self.train_split = train_split
        self.val_split = val_split
        self.test_split = test_split
        self.extra_train_split = extra_train_split
        self.predict_root = predict_root
        self.crop_size = crop_size
        self.base_size = base_size
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.skip_bad_samples = skip_bad_samples
        self.synthetic_train_images = synthetic_train_images
        self.synthetic_val_images = synthetic_val_images
        self.synthetic_image_size = synthetic_image_size
        self.cache_dir = cache_dir
        self.train_dataset: SegmentationDataset | None = None
        self.val_dataset: SegmentationDataset | None = None
        self.test_dataset: SegmentationDataset | None = None
        self.predict_dataset: SegmentationPredictImages | None = None

    # -- what the model needs before setup (no disk access) ----------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        """Label -> name, `class_names[0] == "background"` (VOC's 20 classes for voc and coco)."""
        return list(SEGMENTATION_CLASS_NAMES if self.format == "synthetic" else VOC_CLASS_NAMES)

    @property
    def num_classes(self) -> int:
        """Classes including background (label 0); IGNORE_INDEX is not one of them."""
        return len(self.class_names)

    @property
    def ignore_index(self) -> int:
        """The mask value that losses and metrics skip (borders, void, padding)."""
        return IGNORE_INDEX

    def generate_synthetic(self) -> Path:
        return ensure_synthetic_segmentation(
            self.cache_dir, self.synthetic_train_images, self.synthetic_val_images, self.synthetic_image_size
        )

    def train_transform(self) -> SegmentationTrainTransform:
        return SegmentationTrainTransform(self.crop_size, self.base_size, self.scale_range, self.mean, self.std)

    def eval_transform(self) -> SegmentationEvalTransform:
        return SegmentationEvalTransform(self.mean, self.std)

    def build_dataset(self, split: str, train: bool) -> SegmentationDataset:
        """One split of the configured format, with the training or evaluation transform."""
        transform = self.train_transform() if train else self.eval_transform()
        if self.format == "coco":
            return CocoSegmentation(
                self.data_root,
                split,
                transform,
                remove_images_without_annotations=train,
                skip_bad_samples=self.skip_bad_samples,
            )
        extra, exclude = None, ()
        if train and self.extra_train_split is not None:
            extra = self.extra_train_split
            exclude = read_voc_split(resolve_voc_root(self.data_root), self.val_split)
        return VocSegmentation(
            self.data_root,
            split,
            transform,
            extra_split=extra,
            exclude=exclude,
            class_names=self.class_names,
            skip_bad_samples=self.skip_bad_samples,
        )

    def build_predict_dataset(self, root: str) -> SegmentationPredictImages:
        return SegmentationPredictImages(root, self.eval_transform(), skip_bad_samples=self.skip_bad_samples)
