"""The image-classification LightningDataModule: synthetic shapes or an ImageNet-layout folder.

Both formats run the same reader (tasks/data/imagefolder.py): the synthetic data is generated once into the
cache in the ImageNet layout. `class_names` / `num_classes` work right after construction (LightningCLI links
them into the model then): fixed names for synthetic, the train split's sorted class folder names otherwise (a
directory listing, nothing decoded). Items are (image float32 [3, R, R], label int), R = `resolution`, batched
by the default collate; predict items are (image, path str). Unreadable images are replaced by the next readable
one and counted (`skip_counts()`, `<split>_dataset.skipped_images`): the task logs them, since a metric computed
with skips is computed partly on substitute items.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

from tasks.classify.data.formats.imagefolder import (
    ClassificationPredictImages,
    ImageFolderClassification,
    find_classes,
    split_folder,
)
from tasks.classify.data.synthetic import (
    CLASSIFICATION_CLASS_NAMES,
    DEFAULT_IMAGE_SIZE,
    DEFAULT_TRAIN_IMAGES,
    DEFAULT_VAL_IMAGES,
    ensure_synthetic_classification,
)
from tasks.classify.data.transforms import (
    AugmentPolicy,
    ClassificationEvalTransform,
    ClassificationTrainTransform,
    check_train_options,
    eval_resize_side,
)
from tasks.common.datamodule import TaskDataModule, check_source

ClassificationFormat = Literal["synthetic", "imagefolder"]
CLASSIFICATION_FORMATS: tuple[str, ...] = get_args(ClassificationFormat)


class ClassificationDataModule(TaskDataModule):
    """Image-classification data for the classification task.

    Args:
        format: "synthetic" (8 shape x colour classes generated once into `cache_dir`, see
            tasks/data/synthetic_classification.py) or "imagefolder" (root/<split>/<class>/<images>).
        root: dataset folder (None only for synthetic).
        train_split, val_split: split folder names; the train split's class folders define the labels.
            test_split None means the val split.
        val_labels_file: for a flat val folder (images directly in root/val_split): a file of `filename,class`
            lines (optional header `filename,class`); also used by test when test reads the val split.
        predict_root: a folder of images for `predict`, walked recursively.
        resolution: side R of every image the model sees (train crops and eval centre crops).
        crop_pct: evaluation resizes the shorter side to int(R / crop_pct), then centre-crops R.
        scale, hflip, color_jitter, augment_policy, random_erasing: training augmentation (see
            tasks/data/classification_transforms.py); "trivial" is TrivialAugment.
        batch_size: training batch size; eval_batch_size: val/test/predict batch size.
        mean, std: normalisation, in 0-1 RGB units.
        synthetic_*: size of the generated dataset; the default image size makes the eval resize of R = 128 a
            no-op. cache_dir defaults to $MOBILENET_SUITE_CACHE or ~/.cache/mobilenet-suite.
    """

    def __init__(
        self,
        format: ClassificationFormat = "synthetic",
        root: str | None = None,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str | None = None,
        val_labels_file: str | None = None,
        predict_root: str | None = None,
        resolution: int = 128,
        crop_pct: float = 0.875,
        scale: tuple[float, float] = (0.08, 1.0),
        hflip: float = 0.5,
        color_jitter: float = 0.0,
        augment_policy: AugmentPolicy = "none",
        random_erasing: float = 0.0,
        batch_size: int = 64,
        eval_batch_size: int = 128,
        num_workers: int = 2,
        mean: tuple[float, float, float] = (0.485, 0.456, 0.406),
        std: tuple[float, float, float] = (0.229, 0.224, 0.225),
        synthetic_train_images: int = DEFAULT_TRAIN_IMAGES,
        synthetic_val_images: int = DEFAULT_VAL_IMAGES,
        synthetic_image_size: int = DEFAULT_IMAGE_SIZE,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        check_source(format, CLASSIFICATION_FORMATS, root, train_split, val_split, test_split)
        if format == "synthetic" and val_labels_file is not None:
            raise ValueError(f"val_labels_file is for format='imagefolder' only (got {val_labels_file!r})")
        check_train_options(resolution, scale, hflip, color_jitter, augment_policy, random_erasing)
        eval_resize_side(resolution, crop_pct)  # validates crop_pct now, not at setup
        for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std need 3 values (RGB), std all > 0; got mean={mean}, std={std}")
        self.save_hyperparameters()
        self.format = format
        self.root = root
        self.train_split = train_split
        self.val_split = val_split
        self.test_split = test_split
        self.val_labels_file = val_labels_file
        self.predict_root = predict_root
        self.resolution = resolution
        self.crop_pct = crop_pct
        self.scale = (float(scale[0]), float(scale[1]))
        self.hflip = hflip
        self.color_jitter = color_jitter
        self.augment_policy = augment_policy
        self.random_erasing = random_erasing
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.synthetic_train_images = synthetic_train_images
        self.synthetic_val_images = synthetic_val_images
        self.synthetic_image_size = synthetic_image_size
        self.cache_dir = cache_dir
        self._class_names: list[str] | None = None
        self.train_dataset: ImageFolderClassification | None = None
        self.val_dataset: ImageFolderClassification | None = None
        self.test_dataset: ImageFolderClassification | None = None
        self.predict_dataset: ClassificationPredictImages | None = None

    # -- what the model needs at construction -------------------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        """Label -> class name: the train split's class folders, sorted (fixed names for synthetic, no disk)."""
        if self._class_names is None:
            if self.format == "synthetic":
                self._class_names = list(CLASSIFICATION_CLASS_NAMES)
            else:
                folder = split_folder(self.root, self.train_split)  # type: ignore[arg-type]
                names = find_classes(folder)
                if not names:
                    raise ValueError(
                        f"{folder} has no class folders; the train split must be laid out as "
                        f"{folder}/<class>/<images> (its class folders define the labels)"
                    )
                self._class_names = names
        return list(self._class_names)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def generate_synthetic(self) -> Path:
        return ensure_synthetic_classification(
            self.cache_dir, self.synthetic_train_images, self.synthetic_val_images, self.synthetic_image_size
        )

    def train_transform(self) -> ClassificationTrainTransform:
        return ClassificationTrainTransform(
            self.resolution,
            scale=self.scale,
            hflip=self.hflip,
            color_jitter=self.color_jitter,
            augment_policy=self.augment_policy,
            random_erasing=self.random_erasing,
            mean=self.mean,
            std=self.std,
        )

    def eval_transform(self) -> ClassificationEvalTransform:
        return ClassificationEvalTransform(self.resolution, self.crop_pct, self.mean, self.std)

    def build_dataset(self, split: str, train: bool) -> ImageFolderClassification:
        """One split with the train split's label mapping and the training or evaluation transform."""
        transform = self.train_transform() if train else self.eval_transform()
        labels_file = self.val_labels_file if split == self.val_split and not train else None
        return ImageFolderClassification(
            self.data_root,
            split,
            transform,
            class_names=self.class_names,
            labels_file=labels_file,
            require_every_class=train,
        )

    def build_predict_dataset(self, root: str) -> ClassificationPredictImages:
        return ClassificationPredictImages(root, self.eval_transform())

    def skip_counts(self) -> dict[str, int]:
        """Unreadable-image skips so far per built dataset ("train", "val", "test", "predict"), all workers."""
        datasets = {
            "train": self.train_dataset,
            "val": self.val_dataset,
            "test": self.test_dataset,
            "predict": self.predict_dataset,
        }
        return {name: dataset.skipped_images for name, dataset in datasets.items() if dataset is not None}
