"""The detection LightningDataModule: synthetic shapes, COCO or VOC, with SSD-style augmentation.

`num_classes` and `class_names` work before `setup()` (LightningCLI links them into the model at construction):
they read only the category list, lazily, generating the synthetic dataset first when format="synthetic".
Evaluation datasets (`val_dataset`, `test_dataset`) carry `coco_gt`, `label_to_category_id` and
`voc_ground_truth()`; see tasks/detect/data/records.py for the item contract.
"""

from __future__ import annotations

from typing import Any

import torch

from tasks.common.datamodule import TaskDataModule
from tasks.common.splits import DEFAULT_VAL_FRACTION
from tasks.detect.data.formats import FORMATS, DetectionFormat
from tasks.detect.data.transforms import AUGMENTS, Augment, DetectionTransform

# "coco", "synthetic", "voc": one module each in tasks/detect/data/formats/.
DatasetFormat = FORMATS.literal()


def collate_detection(batch: list[tuple[torch.Tensor, dict[str, Any]]]) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """Stack the images to [B, 3, S, S]; keep the per-image targets (or predict metas) as a list of dicts."""
    images, targets = zip(*batch, strict=True)
    return torch.stack(images), list(targets)


class DetectionDataModule(TaskDataModule):
    """Object-detection data for the SSDLite task.

    Args:
        format: "synthetic" (generated once into `cache_dir`, then read as COCO), "coco" or "voc".
        root: dataset folder (None only for synthetic, or COCO named by `*_annotations`). COCO: its layout is
            discovered (annotations/instances_<split>.json, COCO 2017's train2017/val2017, Roboflow's
            <split>/_annotations.coco.json, CVAT's annotations/instances_default.json; see
            tasks/common/coco_layout.py). VOC: a year folder or a VOCdevkit folder (splits then like
            "VOC2007/trainval+VOC2012/trainval"), or a folder of Annotations/ and JPEGImages/ without ImageSets/
            (every annotated image; the classes read from the XMLs unless they are VOC's).
        train_split, val_split: split names; test_split None means the val split (or "test" when
            `test_annotations` are given).
        train_annotations, train_images, val_annotations, val_images, test_annotations, test_images: COCO only,
            any COCO annotation file with its image folder (default: the file's folder), instead of root. Without
            val_annotations, validation is held out from train_annotations' images.
        val_fraction: for data without a validation split (one COCO file, VOC without ImageSets/), the fraction
            of its images held out for validation with a fixed seed; their names go into the run folder's
            val_split.txt.
        class_names: label -> name (background first where the task has one); None reads them from the data
            and records them, so checkpoints carry them (see TaskDataModule).
        category_ids: the dataset's category id of each label 1..K (COCO's own ids); None reads them from the data
            and records them, like `class_names`, so that predictions from a checkpoint carry the data's ids.
        predict_root: a folder of images for `predict`.
        image_size: the square input side S.
        augment: training policy, "flip" (horizontal flip alone, the default: in a short run, crops that change the
            objects' scale slow learning), "ssdlite" (IoU crop + flip, torchvision's recipe), "ssd" (+ photometric +
            zoom-out) or "none".
        keep_aspect_ratio: evaluation/predict letterbox (longest side to S, pad bottom/right) instead of stretching.
        mean, std: normalisation, in 0-1 RGB units.
        skip_bad_samples: False: a bad sample (an unreadable or missing image, or one whose size differs from its
            annotation) is an error naming the file; True: it is logged, counted in `dataset.skipped_images` and
            replaced by the next one.
        synthetic_*: size of the generated dataset; cache_dir defaults to $MOBILENET_SUITE_CACHE or
            ~/.cache/mobilenet-suite.
    """

    formats = FORMATS
    collate = staticmethod(collate_detection)

    def __init__(
        self,
        format: DatasetFormat = "synthetic",
        root: str | None = None,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str | None = None,
        predict_root: str | None = None,
        class_names: list[str] | None = None,
        category_ids: list[int] | None = None,
        train_annotations: str | None = None,
        train_images: str | None = None,
        val_annotations: str | None = None,
        val_images: str | None = None,
        test_annotations: str | None = None,
        test_images: str | None = None,
        val_fraction: float = DEFAULT_VAL_FRACTION,
        image_size: int = 320,
        batch_size: int = 8,
        num_workers: int = 2,
        augment: Augment = "flip",
        keep_aspect_ratio: bool = False,
        mean: tuple[float, float, float] = (0.485, 0.456, 0.406),
        std: tuple[float, float, float] = (0.229, 0.224, 0.225),
        skip_bad_samples: bool = False,
        synthetic_train_images: int = 1200,
        synthetic_val_images: int = 200,
        synthetic_image_size: int = 320,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()  # saves and checks the arguments
        if test_annotations is not None and test_split is None:
            self.hparams["test_split"] = "test"  # test_split None would mean the val split
        if augment not in AUGMENTS:
            raise ValueError(f"augment={augment!r} is not supported; valid values: {list(AUGMENTS)}")
        if image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {image_size}")

    @property
    def dataset_format(self) -> DetectionFormat:
        return self.formats.get(self.format)

    @property
    def label_to_category_id(self) -> dict[int, int]:
        """Label 1..K -> the dataset's category id (COCO's own ids; VOC's and synthetic's equal the labels)."""
        if self.hparams.get("category_ids") is None:
            self.hparams["category_ids"] = list(self.dataset_format.label_to_category_id(self).values())
        return {label: int(c) for label, c in enumerate(self.hparams["category_ids"], start=1)}

    def setup(self, stage: str | None = None) -> None:
        if stage != "predict":  # predict reads no dataset, only the images
            _ = self.class_names, self.label_to_category_id  # recorded now, so that every checkpoint carries them
        super().setup(stage)

    def build_dataset(self, split: str, train: bool) -> Any:
        dataset = super().build_dataset(split, train)
        if dataset.label_to_category_id != self.label_to_category_id:
            raise ValueError(
                f"{getattr(dataset, 'annotation_file', split)} maps labels to the category ids "
                f"{list(dataset.label_to_category_id.values())}, but category_ids (given, or from a checkpoint) are "
                f"{list(self.label_to_category_id.values())}; leave --data.category_ids out to read them from the data"
            )
        return dataset

    def eval_transform(self) -> DetectionTransform:
        """Resize (or letterbox), normalise, to tensor: for val, test and predict."""
        return DetectionTransform(
            self.image_size, tuple(self.mean), tuple(self.std), "none", letterbox=self.keep_aspect_ratio
        )

    def train_transform(self) -> DetectionTransform:
        """The `augment` policy, then a plain resize to S x S (letterboxing is for evaluation only)."""
        return DetectionTransform(self.image_size, tuple(self.mean), tuple(self.std), self.augment)
