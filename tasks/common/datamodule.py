"""The data base of every task: format registries, argument checks, loaders and the loader methods.

A task's dataset formats live in its `data/formats/` package, one module per format, each registering a
`DataFormat` by name in the package's `FormatRegistry` (as detectron2's `DatasetCatalog` and mmengine's registries):
how to build a split, how to read the class names, which arguments only it reads, and for a generated (synthetic)
format how to write its dataset. `TaskDataModule` looks the format up; it never branches on the format's name.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib
import inspect
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, TypeVar

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from tasks.common.distributed import evaluation_sampler
from tasks.common.images import PredictImages
from tasks.common.resume import Position, ResumableLoader, ResumableSampler, trainer_position
from tasks.common.synthetic import SPLITS

# Data without a validation split of its own (one annotation file, a VOC folder without ImageSets/) holds out
# `val_fraction` of its images, drawn with this fixed seed, and lists them in this file of the run folder.
DEFAULT_VAL_FRACTION = 0.1
VAL_SPLIT_SEED = 0
VAL_SPLIT_FILE = "val_split.txt"


class DatasetNotFoundError(FileNotFoundError):
    """The data the arguments point at is not there (no such root, file, or known layout). Its message says what
    was found and what to pass; the command line prints it as one `error: ...` line (tasks/common/cli.py)."""


def validation_mask(count: int, fraction: float, source: str) -> np.ndarray:
    """bool [count]: which of `count` images (in a fixed order) are held out for validation: round(fraction *
    count) of them, at least 1 and at most count - 1, drawn with VAL_SPLIT_SEED, so that every run, and the
    training and validation datasets of one run, agree. `source` names the data in the error for < 2 images."""
    if count < 2:
        raise ValueError(f"{source} has {count} image(s); holding out a validation split needs at least 2")
    held_out = min(max(1, round(fraction * count)), count - 1)
    mask = np.zeros(count, dtype=bool)
    mask[np.random.default_rng(VAL_SPLIT_SEED).permutation(count)[:held_out]] = True
    return mask


def split_role(data: Any, split: str, train: bool) -> Literal["train", "val", "test"]:
    """Which of the data's splits a format's `build(data, split, transform, train)` is asked for, by name: the train
    split (also with the evaluation transform, as int8 calibration reads it), the val split, or (any other name)
    the test split."""
    if train or split == data.train_split:
        return "train"
    return "val" if split == data.val_split else "test"


@dataclass(frozen=True)
class HeldOutSplit:
    """A validation split drawn from data that has none (`validation_mask`): what a dataset built from its
    validation part carries as `held_out`, so that the data module can write and log it."""

    source: str  # the annotation file or folder it was drawn from
    val_names: list[str]  # the validation images' file names
    train_count: int
    fraction: float


@dataclass(frozen=True, kw_only=True)
class DataFormat:
    """One dataset format of a task, registered by `name` (the data module's `format` value).

    `build(data, split, transform, train)` returns the split's dataset; `data` is the data module, whose
    arguments, `data_root`, `class_names` and `skip_bad_samples` it reads. `class_names(data)` is label -> name,
    read before setup (a category list or folder names, never images). `generate(data)`, for a generated format,
    writes its dataset once (cached) and returns the folder: such a format takes no root and has the splits
    "train" and "val" only. `options` are the data module arguments only this format reads; another format given
    one of them is an error naming it. `root_alternatives` are those of its options that locate the data without
    `root` (e.g. annotation files): given one of them, root may be None.
    """

    name: str
    build: Callable[[Any, str, Any, bool], Dataset]
    class_names: Callable[[Any], list[str]]
    generate: Callable[[Any], Path] | None = None
    options: tuple[str, ...] = ()
    root_alternatives: tuple[str, ...] = ()


F = TypeVar("F", bound=DataFormat)


def fixed_class_names(names: Sequence[str]) -> Callable[[Any], list[str]]:
    """A format's `class_names` where they are known without reading the data."""
    fixed = list(names)
    return lambda data: list(fixed)


def synthetic_format(
    read_as: F,
    ensure: Callable[[str | None, int, int, int], Path],
    class_names: Sequence[str] | None = None,
    name: str = "synthetic",
) -> F:
    """A generated format: `ensure(cache_dir, num_train, num_val, image_size)` writes the dataset once (sized by
    the data module's `cache_dir` and `synthetic_*` arguments) in the layout of `read_as`, which then reads it;
    `class_names` fixed names (None: read as `read_as` does). It has none of `read_as`'s format-only options."""

    def generate(data: Any) -> Path:
        return ensure(data.cache_dir, data.synthetic_train_images, data.synthetic_val_images, data.synthetic_image_size)

    names = read_as.class_names if class_names is None else fixed_class_names(class_names)
    return dataclasses.replace(
        read_as, name=name, class_names=names, generate=generate, options=(), root_alternatives=()
    )


class FormatRegistry(Generic[F]):
    """The dataset formats of one task by name.

    The modules of `package` (the task's `data/formats/` folder) register their formats when imported, and the
    registry imports them all on its first lookup, so a new format is one new file in that folder.
    """

    def __init__(self, task: str, package: str) -> None:
        self.task = task
        self.package = package
        self._formats: dict[str, F] = {}
        self._discovered = False

    def register(self, data_format: F) -> F:
        """Add `data_format` under its name (once); returns it, so a module can keep it."""
        if data_format.name in self._formats:
            raise ValueError(f"{self.task} format {data_format.name!r} is registered twice")
        self._formats[data_format.name] = data_format
        return data_format

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        for module in pkgutil.iter_modules(importlib.import_module(self.package).__path__):
            importlib.import_module(f"{self.package}.{module.name}")

    def names(self) -> tuple[str, ...]:
        """The registered format names, sorted."""
        self._discover()
        return tuple(sorted(self._formats))

    def literal(self) -> Any:
        """`Literal[<the names>]`: the type of the data module's `format` argument (checked by the CLI)."""
        return Literal[self.names()]

    def get(self, name: str) -> F:
        """The format registered as `name`; ValueError listing the registered names otherwise."""
        self._discover()
        if name not in self._formats:
            raise ValueError(
                f"format={name!r} is not a registered {self.task} format; valid formats: {list(self.names())}"
            )
        return self._formats[name]

    def options(self) -> dict[str, list[str]]:
        """Format-only argument -> the names of the formats that read it."""
        owners: dict[str, list[str]] = {}
        for name in self.names():
            for option in self._formats[name].options:
                owners.setdefault(option, []).append(name)
        return owners


def freeze_inherited_objects(worker_id: int) -> None:
    """In each DataLoader worker: move the Python objects it inherited through fork (the main process's heap, e.g.
    the evaluation split's `coco_gt`) to the collector's permanent generation. A full collection would otherwise
    visit, and so copy into the worker, every page holding them: the growth the flat records avoid."""
    gc.freeze()


def make_loader(
    dataset: Dataset | None,
    name: str,
    batch_size: int,
    num_workers: int,
    collate: Callable,
    train: bool = False,
    position: Position | None = None,
) -> DataLoader:
    """Training: a `ResumableLoader` over seeded (index, augmentation seed) keys that starts where `position`
    says (see tasks/common/resume.py); evaluation: plain order, unpadded shards under torch.distributed."""
    if dataset is None:
        raise RuntimeError(f"{name} is not built: call setup() with the matching stage first")
    # A training set smaller than one batch still yields that one batch instead of none.
    drop_last = train and len(dataset) > batch_size
    sampler: Sampler | None
    if train:
        epoch_samples = len(dataset) // batch_size * batch_size if drop_last else len(dataset)
        sampler = ResumableSampler(len(dataset), position, epoch_samples=epoch_samples)
    else:
        sampler = evaluation_sampler(dataset)
    return ResumableLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
        collate_fn=collate,
        generator=torch.Generator(),  # worker seeds drawn from here leave the global random stream untouched
        worker_init_fn=freeze_inherited_objects,
    )


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
