"""The detection LightningDataModule: synthetic shapes, COCO or VOC, with SSD-style augmentation.

`num_classes` and `class_names` work before `setup()` (LightningCLI links them into the model at construction):
they read only the category list, lazily, generating the synthetic dataset first when format="synthetic".
Evaluation datasets (`val_dataset`, `test_dataset`) carry `coco_gt`, `label_to_category_id` and
`voc_ground_truth()`; see tasks/data/__init__.py for the item contract.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

import torch

from tasks.common.categories import VOC_CLASS_NAMES
from tasks.common.coco import class_names_of, coco_annotation_file, read_coco_categories
from tasks.common.datamodule import TaskDataModule, check_source
from tasks.common.images import PredictImages
from tasks.detect.data.formats.coco import CocoDetection
from tasks.detect.data.formats.voc import VocDetection
from tasks.detect.data.records import AnnotatedImages
from tasks.detect.data.synthetic import ensure_synthetic_detection
from tasks.detect.data.transforms import AUGMENTS, Augment, DetectionTransform

DatasetFormat = Literal["synthetic", "coco", "voc"]
FORMATS: tuple[str, ...] = get_args(DatasetFormat)


def collate_detection(batch: list[tuple[torch.Tensor, dict[str, Any]]]) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """Stack the images to [B, 3, S, S]; keep the per-image targets (or predict metas) as a list of dicts."""
    images, targets = zip(*batch, strict=True)
    return torch.stack(images), list(targets)


class DetectionDataModule(TaskDataModule):
    """Object-detection data for the SSDLite task.

    Args:
        format: "synthetic" (generated once into `cache_dir`, then read as COCO), "coco" or "voc".
        root: dataset folder (None only for synthetic). COCO: holds annotations/instances_<split>.json;
            VOC: a year folder or a VOCdevkit folder (splits then like "VOC2007/trainval+VOC2012/trainval").
        train_split, val_split: split names; test_split None means the val split.
        predict_root: a folder of images for `predict`.
        image_size: the square input side S.
        augment: training policy, "ssdlite" (IoU crop + flip), "ssd" (+ photometric + zoom-out) or "none".
        keep_aspect_ratio: evaluation/predict letterbox (longest side to S, pad bottom/right) instead of stretching.
        mean, std: normalisation, in 0-1 RGB units.
        synthetic_*: size of the generated dataset; cache_dir defaults to $MOBILENET_SUITE_CACHE or
            ~/.cache/mobilenet-suite.
    """

    collate = staticmethod(collate_detection)

    def __init__(
        self,
        format: DatasetFormat = "synthetic",
        root: str | None = None,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str | None = None,
        predict_root: str | None = None,
        image_size: int = 320,
        batch_size: int = 16,
        num_workers: int = 2,
        augment: Augment = "ssdlite",
        keep_aspect_ratio: bool = False,
        mean: tuple[float, float, float] = (0.485, 0.456, 0.406),
        std: tuple[float, float, float] = (0.229, 0.224, 0.225),
        synthetic_train_images: int = 1200,
        synthetic_val_images: int = 200,
        synthetic_image_size: int = 320,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        check_source(format, FORMATS, root, train_split, val_split, test_split)
        if augment not in AUGMENTS:
            raise ValueError(f"augment={augment!r} is not supported; valid values: {list(AUGMENTS)}")
        for name, value in (("image_size", image_size), ("batch_size", batch_size)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.save_hyperparameters()
        self.format = format
        self.root = root
        self.train_split = train_split
        self.val_split = val_split
        self.test_split = test_split
        self.predict_root = predict_root
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.augment = augment
        self.keep_aspect_ratio = keep_aspect_ratio
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.synthetic_train_images = synthetic_train_images
        self.synthetic_val_images = synthetic_val_images
        self.synthetic_image_size = synthetic_image_size
        self.cache_dir = cache_dir
        self._class_names: list[str] | None = None
        self.train_dataset: AnnotatedImages | None = None
        self.val_dataset: AnnotatedImages | None = None
        self.test_dataset: AnnotatedImages | None = None
        self.predict_dataset: PredictImages | None = None

    # -- what the model needs before setup ---------------------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        """Label -> name, `class_names[0] == "background"`; read lazily from the category list."""
        if self._class_names is None:
            if self.format == "voc":
                self._class_names = list(VOC_CLASS_NAMES)
            else:
                self._class_names = class_names_of(self._categories())
        return list(self._class_names)

    @property
    def label_to_category_id(self) -> dict[int, int]:
        """Label 1..K -> the dataset's category id (COCO's own ids; VOC's and synthetic's equal the labels)."""
        if self.format == "voc":
            return {label: label for label in range(1, len(VOC_CLASS_NAMES))}
        return {label: int(c["id"]) for label, c in enumerate(self._categories(), start=1)}

    def _categories(self) -> list[dict[str, Any]]:
        # Categories from the val file: usually far smaller than train's, and the two must agree.
        return read_coco_categories(coco_annotation_file(self.data_root, self.val_split))

    @property
    def num_classes(self) -> int:
        """Foreground classes + 1 (background is label 0)."""
        return len(self.class_names)

    def generate_synthetic(self) -> Path:
        return ensure_synthetic_detection(
            self.cache_dir, self.synthetic_train_images, self.synthetic_val_images, self.synthetic_image_size
        )

    def eval_transform(self) -> DetectionTransform:
        """Resize (or letterbox), normalise, to tensor: for val, test and predict."""
        return DetectionTransform(self.image_size, self.mean, self.std, "none", letterbox=self.keep_aspect_ratio)

    def train_transform(self) -> DetectionTransform:
        """The `augment` policy, then a plain resize to S x S (letterboxing is for evaluation only)."""
        return DetectionTransform(self.image_size, self.mean, self.std, self.augment)

    def build_dataset(self, split: str, train: bool) -> AnnotatedImages:
        """One split of the configured format, with the training or evaluation transform."""
        transform = self.train_transform() if train else self.eval_transform()
        if self.format == "voc":
            return VocDetection(self.data_root, split, transform)
        dataset = CocoDetection(self.data_root, split, transform)
        if dataset.class_names != self.class_names:
            raise ValueError(
                f"{dataset.annotation_file}: categories {dataset.class_names[1:]} differ from those of split "
                f"{self.val_split!r} {self.class_names[1:]}; all splits must share one category list"
            )
        return dataset

    def build_predict_dataset(self, root: str) -> PredictImages:
        return PredictImages(root, self.eval_transform())
