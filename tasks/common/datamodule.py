"""The data module base of every task (`TaskDataModule`): its arguments and their checks, the format lookup, the
datasets of each stage and the four loaders.

Formats are looked up by name in the task's registry (tasks/common/formats.py), loaders come from
tasks/common/loaders.py, and a validation split drawn from data without one is logged and written as
tasks/common/splits.py describes.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset, default_collate

from tasks.common.formats import DataFormat, FormatRegistry
from tasks.common.images import PredictImages
from tasks.common.loaders import make_loader
from tasks.common.resume import trainer_position
from tasks.common.splits import VAL_SPLIT_FILE, VAL_SPLIT_SEED, HeldOutSplit
from tasks.common.synthetic import SPLITS


class TaskDataModule(pl.LightningDataModule):
    """The data module base of every task: its arguments, the format lookup, datasets and the four loaders.

    A subclass lists its arguments in `__init__` and calls `super().__init__()` first: that saves them as
    `hparams` (`save_hyperparameters` on the subclass's frame) and checks those every task shares. The arguments
    are then read as attributes (`self.batch_size` is `self.hparams["batch_size"]`): one copy, no per-task list.
    Every task has `format`, `root`, `train_split`, `val_split`, `test_split`, `predict_root`, `class_names`,
    `batch_size`, `num_workers`, `skip_bad_samples` (the bad-sample policy of tasks/common/images.py), `cache_dir`
    and the `synthetic_*` sizes; `eval_batch_size` where the task has one.

    `class_names` None reads the names from the data (its category list, class folders or classes.txt) and records
    them in `hparams`, so that every checkpoint carries them and `predict` from a checkpoint needs no dataset.
    Given (by the user, or by the CLI from a checkpoint), they are the labels, and a split whose own classes differ
    is an error naming both lists.

    A task with a `val_fraction` argument reads data without a validation split of its own (one annotation file,
    a VOC folder without ImageSets/) by holding out that fraction of its images (`validation_mask`); the evaluation
    dataset of such data carries `held_out` (a HeldOutSplit), which `setup` logs and writes into the run folder.

    Subclasses set `formats` (their registry), `collate`, `predict_images` (the predict dataset class) and
    `predict_batch_size` where predict items differ in size, and implement `train_transform` and
    `eval_transform`. `data_root` is `root`, or for a generated format the folder its `generate` returns.
    """

    formats: ClassVar[FormatRegistry[Any]]
    collate: Callable[[list[Any]], Any] = staticmethod(default_collate)
    predict_images: type[Dataset] = PredictImages
    predict_batch_size: int | None = None  # None: the evaluation batch size
    # the arguments every task has, read from hparams
    format: str
    root: str | None
    train_split: str
    val_split: str
    test_split: str | None
    predict_root: str | None
    batch_size: int
    num_workers: int
    skip_bad_samples: bool
    cache_dir: str | None
    synthetic_train_images: int
    synthetic_val_images: int
    synthetic_image_size: int

    def __init__(self) -> None:
        super().__init__()
        frame = inspect.currentframe()
        # logger=False: the model logs the run's hyperparameters (class_names are in both, linked; the data's copy is
        # filled in after construction, which Lightning's merge of the initial values would call a conflict)
        self.save_hyperparameters(frame=frame.f_back if frame is not None else None, logger=False)
        self._data_root: Path | None = None
        self._class_names: list[str] | None = None
        self.format_cache: dict[str, Any] = {}  # what a format found out once about the data (e.g. its layout)
        self.train_dataset: Any = None
        self.val_dataset: Any = None
        self.test_dataset: Any = None
        self.predict_dataset: Any = None
        self.check_arguments()

    def __getattr__(self, name: str) -> Any:
        """An argument of the constructor, from `hparams` (only reached when no attribute has the name)."""
        hparams = self.__dict__.get("_hparams")
        if not name.startswith("_") and hparams is not None and name in hparams:
            return hparams[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def check_arguments(self) -> None:
        """Errors that name the argument: unknown format, root and splits, format-only options, sizes."""
        data_format = self.dataset_format
        if data_format.generate is not None:
            if self.root is not None:
                raise ValueError(
                    f"format={self.format!r} generates its own data and takes no root (got root={self.root!r})"
                )
            if (self.train_split, self.val_split, self.test_split or self.val_split) != (*SPLITS, SPLITS[1]):
                raise ValueError(
                    f"format={self.format!r} has the splits {' and '.join(repr(s) for s in SPLITS)} only; got "
                    f"train_split={self.train_split!r}, val_split={self.val_split!r}, test_split={self.test_split!r}"
                )
        elif self.root is None and all(self.hparams.get(o) is None for o in data_format.root_alternatives):
            alternatives = "".join(f" or {o}" for o in data_format.root_alternatives)
            raise ValueError(f"format={self.format!r} needs root=<dataset folder>{alternatives}")
        for option, owners in self.formats.options().items():
            if option not in data_format.options and self.hparams.get(option) is not None:
                raise ValueError(
                    f"{option} is for format={' or '.join(repr(o) for o in owners)} only "
                    f"(got format={self.format!r}, {option}={self.hparams[option]!r})"
                )
        if "val_fraction" in self.hparams and not 0 < self.hparams["val_fraction"] < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.hparams['val_fraction']}")
        for name in ("batch_size", "eval_batch_size"):
            if name in self.hparams and self.hparams[name] < 1:
                raise ValueError(f"{name} must be >= 1, got {self.hparams[name]}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")

    @property
    def dataset_format(self) -> DataFormat:
        """The registered format named by the `format` argument."""
        return self.formats.get(self.format)

    # -- what the model needs before setup ---------------------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        """Label -> name: the `class_names` argument, else read lazily from the format (its category list or
        folders; fixed for synthetic) and recorded in `hparams` (see the class docstring)."""
        if self._class_names is None:
            given = self.hparams.get("class_names")
            self._class_names = list(given) if given else list(self.dataset_format.class_names(self))
            self.hparams["class_names"] = list(self._class_names)
        return list(self._class_names)

    @property
    def num_classes(self) -> int:
        """The number of labels, background included where the task has one."""
        return len(self.class_names)

    @property
    def data_root(self) -> Path:
        """The dataset folder; for a generated format, generated on first access."""
        if self._data_root is None:
            generate = self.dataset_format.generate
            self._data_root = generate(self) if generate is not None else Path(self.root or ".")
        return self._data_root

    def prepare_data(self) -> None:
        """Generate a generated (synthetic) dataset once (rank 0); real datasets must already be on disk."""
        if self.dataset_format.generate is not None:
            _ = self.data_root

    # -- datasets ----------------------------------------------------------------------------------------------
    def train_transform(self) -> Any:
        raise NotImplementedError

    def eval_transform(self) -> Any:
        raise NotImplementedError

    def build_dataset(self, split: str, train: bool) -> Dataset:
        """One split of the configured format, with the training or the evaluation transform."""
        transform = self.train_transform() if train else self.eval_transform()
        dataset = self.dataset_format.build(self, split, transform, train)
        own = getattr(dataset, "class_names", None)
        if own is not None and list(own) != self.class_names:
            source = getattr(dataset, "annotation_file", None) or f"{self.format} split {split!r} in {self.data_root}"
            raise ValueError(
                f"{source} has the classes {list(own)}, but class_names "
                f"(given, from a checkpoint, or read from the val split) are {self.class_names}; train and evaluate "
                "on data with one class list, or leave --data.class_names out"
            )
        return dataset

    def build_predict_dataset(self, root: str) -> Dataset:
        """The images of a folder, for predict, under the bad-sample policy."""
        return self.predict_images(root, self.eval_transform(), skip_bad_samples=self.skip_bad_samples)

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets the stage needs ("fit", "validate", "test", "predict"; None builds all but predict)."""
        if stage in ("fit", None) and self.train_dataset is None:
            self.train_dataset = self.build_dataset(self.train_split, train=True)
        if stage in ("fit", "validate", None) and self.val_dataset is None:
            self.val_dataset = self.build_dataset(self.val_split, train=False)
            self.record_held_out(getattr(self.val_dataset, "held_out", None))
        if stage in ("test", None) and self.test_dataset is None:
            self.test_dataset = self.build_dataset(self.test_split or self.val_split, train=False)
            self.record_held_out(getattr(self.test_dataset, "held_out", None))
        if stage == "predict" and self.predict_dataset is None:
            if self.predict_root is None:
                raise ValueError("predict needs predict_root=<folder of images>")
            self.predict_dataset = self.build_predict_dataset(self.predict_root)

    def record_held_out(self, split: HeldOutSplit | None) -> None:
        """Log a drawn validation split's counts and write its image names into the run folder (the trainer's
        `log_dir`, as VAL_SPLIT_FILE), so that a run's validation images can be told from its training ones; once
        per split."""
        if split is None or split == self.format_cache.get("held_out"):
            return
        self.format_cache["held_out"] = split
        written = ""
        if self.trainer is not None:
            folder = self.trainer.log_dir  # called on every rank: it broadcasts
            if folder is not None and self.trainer.is_global_zero:
                path = Path(folder) / VAL_SPLIT_FILE
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("".join(f"{name}\n" for name in split.val_names))
                written = f", listed in {path}"
        rank_zero_info(
            f"{split.source} has no validation split of its own: validating on {len(split.val_names)} of its "
            f"{len(split.val_names) + split.train_count} images (val_fraction={split.fraction:g}, seed "
            f"{VAL_SPLIT_SEED}), training on the other {split.train_count}{written}"
        )

    # -- loaders -----------------------------------------------------------------------------------------------
    def _eval_batch_size(self) -> int:
        return getattr(self, "eval_batch_size", self.batch_size)

    def _loader(self, name: str, batch_size: int, train: bool = False) -> DataLoader:
        position = trainer_position(self, batch_size) if train else None
        return make_loader(getattr(self, name, None), name, batch_size, self.num_workers, self.collate, train, position)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train_dataset", self.batch_size, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val_dataset", self._eval_batch_size())

    def test_dataloader(self) -> DataLoader:
        return self._loader("test_dataset", self._eval_batch_size())

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict_dataset", self.predict_batch_size or self._eval_batch_size())
