"""The image-classification LightningDataModule: synthetic shapes or an ImageNet-layout folder.

Both formats run the same reader (tasks/classify/data/formats/imagefolder.py): the synthetic data is generated once
into the cache in the ImageNet layout. `class_names` / `num_classes` work right after construction (LightningCLI
links them into the model then): fixed names for synthetic, the train split's sorted class folder names otherwise
(a directory listing, nothing decoded). Items are (image float32 [3, R, R], label int), R = `resolution`, batched
by the default collate; predict items are (image, path str). Unreadable images follow the bad-sample policy of
every task (`skip_bad_samples`): an error naming the file, or replaced by the next readable one and counted
(`<split>_dataset.skipped_images`), which the task logs, since a metric computed with skips is computed partly
on substitute items.
"""

from __future__ import annotations

from tasks.classify.data.formats import FORMATS
from tasks.classify.data.formats.imagefolder import ClassificationPredictImages
from tasks.classify.data.synthetic import (
    DEFAULT_IMAGE_SIZE,
    DEFAULT_RESOLUTION,
    DEFAULT_TRAIN_IMAGES,
    DEFAULT_VAL_IMAGES,
)
from tasks.classify.data.transforms import (
    AugmentPolicy,
    ClassificationEvalTransform,
    ClassificationTrainTransform,
    Interpolation,
    check_train_options,
    cv2_interpolation,
    eval_resize_side,
)
from tasks.common.datamodule import TaskDataModule

# "imagefolder", "synthetic": one module each in tasks/classify/data/formats/.
ClassificationFormat = FORMATS.literal()


class ClassificationDataModule(TaskDataModule):
    """Image-classification data for the classification task.

    Args:
        format: "synthetic" (8 shape x colour classes generated once into `cache_dir`, see
            tasks/classify/data/synthetic.py) or "imagefolder" (root/<split>/<class>/<images>).
        root: dataset folder (None only for synthetic).
        train_split, val_split: split folder names; the train split's class folders define the labels.
            test_split None means the val split.
        val_labels_file: for a flat val folder (images directly in root/val_split): a file of `filename,class`
            lines (optional header `filename,class`); also used by test when test reads the val split.
        class_names: label -> name (background first where the task has one); None reads them from the data
            and records them, so checkpoints carry them (see TaskDataModule).
        predict_root: a folder of images for `predict`, walked recursively.
        resolution: side R of every image the model sees (train crops and eval centre crops).
        crop_pct: evaluation resizes the shorter side to int(R / crop_pct), then centre-crops R.
        interpolation: how training crops and evaluation resizes sample: "bilinear" (torchvision), "bicubic"
            (timm), "nearest". Named weights (`--model.weights`) set it, with their crop and normalisation.
        scale, hflip, color_jitter, augment_policy, random_erasing: training augmentation (see
            tasks/classify/data/transforms.py); "trivial" is TrivialAugment.
        batch_size: training batch size; eval_batch_size: val/test/predict batch size.
        mean, std: normalisation, in 0-1 RGB units.
        skip_bad_samples: False: an unreadable image is an error naming the file; True: it is logged, counted in
            `dataset.skipped_images` and replaced by the next one.
        synthetic_*: size of the generated dataset; cache_dir defaults to $MOBILENET_SUITE_CACHE or
            ~/.cache/mobilenet-suite.
    """

    formats = FORMATS
    predict_images = ClassificationPredictImages

    def __init__(
        self,
        format: ClassificationFormat = "synthetic",
        root: str | None = None,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str | None = None,
        val_labels_file: str | None = None,
        predict_root: str | None = None,
        class_names: list[str] | None = None,
        resolution: int = DEFAULT_RESOLUTION,
        crop_pct: float = 0.875,
        interpolation: Interpolation = "bilinear",
        scale: tuple[float, float] = (0.5, 1.0),
        hflip: float = 0.5,
        color_jitter: float = 0.0,
        augment_policy: AugmentPolicy = "none",
        random_erasing: float = 0.0,
        batch_size: int = 64,
        eval_batch_size: int = 128,
        num_workers: int = 2,
        mean: tuple[float, float, float] = (0.485, 0.456, 0.406),
        std: tuple[float, float, float] = (0.229, 0.224, 0.225),
        skip_bad_samples: bool = False,
        synthetic_train_images: int = DEFAULT_TRAIN_IMAGES,
        synthetic_val_images: int = DEFAULT_VAL_IMAGES,
        synthetic_image_size: int = DEFAULT_IMAGE_SIZE,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()  # saves and checks the arguments
        check_train_options(resolution, scale, hflip, color_jitter, augment_policy, random_erasing)
        eval_resize_side(resolution, crop_pct)  # validates crop_pct now, not at setup
        cv2_interpolation(interpolation)
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std need 3 values (RGB), std all > 0; got mean={mean}, std={std}")

    def train_transform(self) -> ClassificationTrainTransform:
        low, high = self.scale
        return ClassificationTrainTransform(
            self.resolution,
            scale=(float(low), float(high)),
            hflip=self.hflip,
            color_jitter=self.color_jitter,
            augment_policy=self.augment_policy,
            random_erasing=self.random_erasing,
            mean=tuple(self.mean),
            std=tuple(self.std),
            interpolation=self.interpolation,
        )

    def eval_transform(self) -> ClassificationEvalTransform:
        return ClassificationEvalTransform(
            self.resolution, self.crop_pct, tuple(self.mean), tuple(self.std), self.interpolation
        )
