"""Image-classification datasets in the ImageNet folder layout: root/<split>/<class>/<images>, and predict folders.

The label of a class is its position among the TRAIN split's class folder names, sorted; other splits reuse that
mapping (`class_names=`), so a class means the same label in every split even where a split lacks a class. Class
folders may hold nested subfolders. A validation split may instead be flat (images directly in the split folder)
with a labels file of `filename,class` lines (ImageNet's val set as distributed).

Bad input never shifts the label mapping:
- a missing split folder: FileNotFoundError naming it; no class folders (and no labels file): ValueError;
- an empty class folder in the split that defines the classes: ValueError naming it (the class would never be
  learned, yet would hold a label); a class folder of another split that the train split lacks: ValueError
  naming it and listing the train classes;
- non-image files (by extension): left out, counted in `ignored_files`, one warning per split with an example;
- unreadable images: bad samples (the policy of tasks/common/images.py): an error naming the file, or with
  `skip_bad_samples=True` skipped when read, counted in `skipped_images`, replaced by the next readable item, so
  the dataset never shrinks silently; the caller logs the count (an evaluation with skips is partly computed on
  substitutes).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from deploy.run.images import IMAGE_EXTENSIONS
from tasks.classify.data.formats import FORMATS
from tasks.common.formats import DataFormat
from tasks.common.images import SkippingDataset, load_rgb

logger = logging.getLogger(__name__)

Samples = list[tuple[Path, int]]  # (image path, label) in item order

LABELS_HEADER: tuple[str, str] = ("filename", "class")


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def split_folder(root: str | Path, split: str) -> Path:
    """root/split, or FileNotFoundError naming the path that is missing."""
    folder = Path(root) / split
    if not folder.is_dir():
        raise FileNotFoundError(
            f"split folder {folder} does not exist (expected the ImageNet layout root/<split>/<class>/<images>)"
        )
    return folder


def find_classes(folder: str | Path) -> list[str]:
    """The class folder names directly inside `folder`, sorted; hidden folders (".name") are not classes."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"class folder root {folder} does not exist")
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def walk_files(folder: Path) -> list[Path]:
    """Every file below `folder` (nested folders too, hidden ones left out), sorted by path for a stable order."""
    files = []
    for directory, subfolders, names in os.walk(folder, followlinks=True):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        files.extend(Path(directory) / name for name in names)
    return sorted(files)


def partition_images(files: Iterable[Path]) -> tuple[list[Path], list[Path]]:
    """(image files, other files) by extension (IMAGE_EXTENSIONS, case-insensitive)."""
    images, others = [], []
    for path in files:
        (images if is_image_file(path) else others).append(path)
    return images, others


def warn_ignored(ignored: Sequence[Path], where: str | Path) -> None:
    """One warning for the non-image files of a split: their count and one example."""
    if ignored:
        logger.warning(
            "%s: ignored %d non-image file(s) (valid extensions: %s), e.g. %s",
            where,
            len(ignored),
            ", ".join(IMAGE_EXTENSIONS),
            ignored[0],
        )


def read_labels_file(path: str | Path, class_to_index: Mapping[str, int]) -> dict[str, tuple[int, int]]:
    """`filename,class` lines -> {filename: (label, line number)}.

    Blank lines are skipped; the first non-blank line may be the header `filename,class`. A malformed line, an
    unknown class or a file named twice with different classes is a ValueError naming the file and line; a file
    without any label line is a ValueError naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"labels file {path} does not exist")
    labels: dict[str, tuple[int, int]] = {}
    seen_content = False
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        fields = [field.strip() for field in line.split(",")]
        first_content, seen_content = not seen_content, True
        if first_content and tuple(f.lower() for f in fields) == LABELS_HEADER:
            continue
        if len(fields) != 2 or not all(fields):
            raise ValueError(f"{path}:{number}: expected 'filename,class', got {raw!r}")
        name, class_name = fields
        if class_name not in class_to_index:
            shown = ", ".join(list(class_to_index)[:10]) + (", ..." if len(class_to_index) > 10 else "")
            raise ValueError(
                f"{path}:{number}: class {class_name!r} is not a class folder of the train split "
                f"(the {len(class_to_index)} classes: {shown})"
            )
        label = class_to_index[class_name]
        if name in labels and labels[name][0] != label:
            raise ValueError(
                f"{path}:{number}: {name} is labelled again with another class (first at line {labels[name][1]})"
            )
        labels[name] = (label, number)
    if not labels:
        raise ValueError(f"labels file {path} has no 'filename,class' lines (it is empty or holds only the header)")
    return labels


class ImageFolderClassification(SkippingDataset):
    """One split of an ImageNet-layout folder: items (image float32 [3, R, R] from `transform`, label int).

    Args:
        root: dataset folder holding the split folders.
        split: split folder name (e.g. "train", "val").
        transform: callable uint8 RGB [H, W, 3] -> tensor; `set_random_seed(seed)` is called in each worker.
        class_names: the label mapping (the train split's sorted class folders); None: this split's own.
        labels_file: for a flat split (images directly in root/split): `filename,class` lines.
        require_every_class: every class of the mapping needs a folder with images here (for the split that
            trains: a class without examples could never be learned); always so when class_names is None.
        skip_bad_samples: the bad-sample policy (tasks/common/images.py) for unreadable images.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        transform: Any,
        class_names: Sequence[str] | None = None,
        labels_file: str | Path | None = None,
        require_every_class: bool = False,
        skip_bad_samples: bool = False,
    ) -> None:
        super().__init__(skip_bad_samples)
        self.root = Path(root)
        self.split = split
        self.folder = split_folder(root, split)
        self.transform = transform
        require_every_class = require_every_class or class_names is None
        self.class_names = find_classes(self.folder) if class_names is None else list(class_names)
        self.class_to_index = {name: index for index, name in enumerate(self.class_names)}
        if not self.class_names:
            raise ValueError(f"{self.folder} has no class folders: the label mapping needs at least one class")
        present = find_classes(self.folder)
        if labels_file is not None:
            if present:
                raise ValueError(
                    f"a labels file ({labels_file}) was given but {self.folder} has class folders "
                    f"({', '.join(present[:5])}{', ...' if len(present) > 5 else ''}); a labels file is for a flat "
                    "folder of images only"
                )
            self.samples, self.ignored = self._scan_flat(Path(labels_file))
        elif present:
            self.samples, self.ignored = self._scan_class_folders(present, require_every_class)
        else:
            raise ValueError(
                f"{self.folder} has no class folders; for a flat folder of images pass a labels file of "
                "'filename,class' lines (val_labels_file)"
            )
        if not self.samples:
            raise ValueError(f"{self.folder} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        warn_ignored(self.ignored, self.folder)

    # -- scanning ------------------------------------------------------------------------------------------------
    def _scan_class_folders(self, present: Sequence[str], require_every_class: bool) -> tuple[Samples, list[Path]]:
        unknown = [name for name in present if name not in self.class_to_index]
        missing = [name for name in self.class_names if name not in present]
        if require_every_class and missing:
            raise ValueError(
                f"{self.folder} has no class folder for {', '.join(missing)}: every class of the label mapping "
                "needs examples in this split"
            )
        if unknown:
            raise ValueError(
                f"{self.folder / unknown[0]}: class {unknown[0]!r} is not a class of the train split "
                f"(the {len(self.class_names)} train classes: {', '.join(self.class_names)}); "
                f"all unknown classes here: {', '.join(unknown)}"
            )
        samples: list[tuple[Path, int]] = []
        # Files directly in the split folder belong to no class: counted as ignored, never labelled.
        ignored = [p for p in self.folder.iterdir() if p.is_file()]
        for name in present:
            images, others = partition_images(walk_files(self.folder / name))
            if not images and require_every_class:
                raise ValueError(
                    f"class folder {self.folder / name} holds no images ({', '.join(IMAGE_EXTENSIONS)}): a class "
                    "without examples can never be learned; add images or remove the folder"
                )
            samples.extend((path, self.class_to_index[name]) for path in images)
            ignored.extend(others)
        return samples, sorted(ignored)

    def _scan_flat(self, labels_file: Path) -> tuple[Samples, list[Path]]:
        labels = read_labels_file(labels_file, self.class_to_index)
        images, others = partition_images(p for p in sorted(self.folder.iterdir()) if p.is_file())
        names = {path.name for path in images}
        for name, (_, number) in labels.items():
            if name not in names:
                raise ValueError(
                    f"{labels_file}:{number}: {name} is not an image file of {self.folder} "
                    f"(no such file, or not one of {', '.join(IMAGE_EXTENSIONS)})"
                )
        unlabelled = [path for path in images if path.name not in labels]
        if unlabelled:
            raise ValueError(
                f"{unlabelled[0]} is not in the labels file {labels_file} ({len(unlabelled)} image(s) of "
                f"{self.folder} have no label); every image of a flat split needs a 'filename,class' line"
            )
        return [(path, labels[path.name][0]) for path in images], others

    # -- items ---------------------------------------------------------------------------------------------------
    @property
    def ignored_files(self) -> int:
        """How many non-image files of the split were left out."""
        return len(self.ignored)

    @property
    def targets(self) -> list[int]:
        """The label of every item, in item order."""
        return [label for _, label in self.samples]

    def class_counts(self) -> dict[str, int]:
        """Images per class name (every class of the mapping, zero where this split has none)."""
        counts = dict.fromkeys(self.class_names, 0)
        for _, label in self.samples:
            counts[self.class_names[label]] += 1
        return counts

    def __len__(self) -> int:
        return len(self.samples)

    def _load_item(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        return self.transform(load_rgb(path)), label


class ClassificationPredictImages(SkippingDataset):
    """Every image below a folder (recursive, sorted): items (image float32 [3, R, R], path str).

    Non-image files are left out and counted (`ignored_files`); an unreadable image is an error, or with
    `skip_bad_samples` skipped, counted in `skipped_images` and replaced by the next readable one, whose own path
    the item carries.
    """

    def __init__(self, folder: str | Path, transform: Any, skip_bad_samples: bool = False) -> None:
        super().__init__(skip_bad_samples)
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"predict folder {self.folder} does not exist")
        self.files, self.ignored = partition_images(walk_files(self.folder))
        if not self.files:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found below {self.folder}")
        warn_ignored(self.ignored, self.folder)
        self.transform = transform

    @property
    def ignored_files(self) -> int:
        return len(self.ignored)

    def __len__(self) -> int:
        return len(self.files)

    def _load_item(self, index: int) -> tuple[torch.Tensor, str]:
        path = self.files[index]
        return self.transform(load_rgb(path)), str(path)


# -- the "imagefolder" format of the data module -------------------------------------------------------------------
def train_class_names(data: Any) -> list[str]:
    """The train split's class folders, sorted (a directory listing, nothing decoded)."""
    folder = split_folder(data.data_root, data.train_split)
    names = find_classes(folder)
    if not names:
        raise ValueError(
            f"{folder} has no class folders; the train split must be laid out as "
            f"{folder}/<class>/<images> (its class folders define the labels)"
        )
    return names


def build_imagefolder(data: Any, split: str, transform: Any, train: bool) -> ImageFolderClassification:
    """One split with the train split's label mapping; `val_labels_file` labels a flat val split."""
    return ImageFolderClassification(
        data.data_root,
        split,
        transform,
        class_names=data.class_names,
        labels_file=data.val_labels_file if split == data.val_split and not train else None,
        require_every_class=train,
        skip_bad_samples=data.skip_bad_samples,
    )


IMAGEFOLDER_FORMAT = FORMATS.register(
    DataFormat(name="imagefolder", build=build_imagefolder, class_names=train_class_names, options=("val_labels_file",))
)
