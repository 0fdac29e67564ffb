"""The semantic-segmentation LightningDataModule (synthetic shapes, Pascal VOC, COCO as VOC classes, folders of
images and class-index masks) and collate.

`num_classes`, `class_names` and `ignore_index` work before `setup()` without touching the disk (LightningCLI
links them into the model at construction). Train items are fixed crop_size x crop_size crops; val/test items
are whole images at their original size, so the val/test loaders use `eval_batch_size` (default 1: each image
alone, exactly as it is); larger eval batches are padded by `collate_segmentation` to the largest image with
ignore (255) in the mask, so padding never counts in a loss or metric (predictions near the padded bottom/right
edges may still differ slightly from single-image evaluation, as the padded context reaches them).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from tasks.common.datamodule import TaskDataModule
from tasks.segment.data.formats import FORMATS
from tasks.segment.data.masks import SegmentationPredictImages
from tasks.segment.data.transforms import (
    IGNORE_INDEX,
    SegmentationEvalTransform,
    SegmentationTrainTransform,
    scaled_sides,
)

# "coco", "masks", "synthetic", "voc": one module each in tasks/segment/data/formats/.
SegmentationFormat = FORMATS.literal()


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
        format: "synthetic" (generated once into `cache_dir` in VOC layout, then read as VOC), "voc", "coco" or
            "masks" (an images folder and a masks folder per split, see tasks/segment/data/formats/masks.py).
        root: dataset folder (None only for synthetic, and for masks given its folder arguments). VOC: a year
            folder (JPEGImages/, SegmentationClass/, ImageSets/Segmentation/) or a VOCdevkit folder holding VOC2012/.
            COCO: annotations/instances_<split>.json with images in <split>/; its 20 VOC categories become labels
            1..20, everything else background. masks: a folder holding images/<split>/ + masks/<split>/ (or
            annotations/, labels/), CamVid's <split>/ + <split>annot/, or <split>/images/ + <split>/masks/.
        train_split, val_split: split names; test_split None means the val split.
        extra_train_split: VOC only, an extra list in ImageSets/Segmentation/ joined to the training split (e.g.
            the SBD "train_aug"; masks from SegmentationClassAug/ when present); val images in it are left out.
        train_images, train_masks, val_images, val_masks, test_images, test_masks: masks only, a split's images
            folder and masks folder (both or neither), instead of finding them under root. Images (any common
            extension) pair with masks (.png: class indices, palette "P" indices as VOC or grayscale "L", 255 =
            ignore; any other void value must be written as 255) by relative path and name without extension,
            nested folders too. test_* need test_split set (any name).
        class_names: label -> name (background first where the task has one); None reads them from the data
            (masks: classes.txt, one name per line, in a masks folder, train's first, its parent or root) and records
            them, so checkpoints carry them (see TaskDataModule).
        predict_root: a folder of images for `predict` (original size, batch 1).
        crop_size, base_size, scale_range: training crops; the shorter side is resized to base_size x
            U(scale_range), padded (mask with 255) up to crop_size, cropped and flipped.
        batch_size: training batch size. eval_batch_size: val/test batch size (see the module docstring).
        mean, std: normalisation, in 0-1 RGB units.
        skip_bad_samples: False: a bad sample (missing/unreadable file, mask size or labels wrong) is an error
            naming the file; True: it is logged, counted in `dataset.skipped_images` and replaced by the next one.
        synthetic_*: size of the generated dataset; cache_dir defaults to $MOBILENET_SUITE_CACHE or
            ~/.cache/mobilenet-suite.
    """

    formats = FORMATS
    collate = staticmethod(collate_segmentation)
    predict_images = SegmentationPredictImages
    predict_batch_size = 1  # images of different sizes, each at its own size

    def __init__(
        self,
        format: SegmentationFormat = "synthetic",
        root: str | None = None,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str | None = None,
        extra_train_split: str | None = None,
        train_images: str | None = None,
        train_masks: str | None = None,
        val_images: str | None = None,
        val_masks: str | None = None,
        test_images: str | None = None,
        test_masks: str | None = None,
        predict_root: str | None = None,
        class_names: list[str] | None = None,
        crop_size: int = 256,
        base_size: int = 256,
        scale_range: tuple[float, float] = (0.75, 1.5),
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
        super().__init__()  # saves and checks the arguments
        if crop_size < 1:
            raise ValueError(f"crop_size must be >= 1, got {crop_size}")
        scaled_sides(base_size, tuple(scale_range))  # validates base_size and scale_range now, not at setup

    @property
    def ignore_index(self) -> int:
        """The mask value that losses and metrics skip (borders, void, padding)."""
        return IGNORE_INDEX

    def train_transform(self) -> SegmentationTrainTransform:
        low, high = self.scale_range
        return SegmentationTrainTransform(
            self.crop_size, self.base_size, (float(low), float(high)), tuple(self.mean), tuple(self.std)
        )

    def eval_transform(self) -> SegmentationEvalTransform:
        return SegmentationEvalTransform(tuple(self.mean), tuple(self.std))
