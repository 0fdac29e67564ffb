"""The "masks" segmentation format: a folder of images and a folder of class-index PNG masks, paired by path.

Each split is an images folder and a masks folder. An image (any of IMAGE_EXTENSIONS) and its mask (`.png`) pair
by their path below the folder without the extension: images/a/b.jpg <-> masks/a/b.png. A mask holds class indices
(PIL mode "P", whose palette indices are the labels as in VOC, or "L"/"I"), 0..num_classes-1, and 255 = ignore;
another void value (CamVid's 11) must be written as 255, or named as a class.

Where the folders come from, per split:
- `--data.<role>_images DIR --data.<role>_masks DIR` (role train, val or test: the splits `train_split`,
  `val_split` and `test_split` name; test folders need `test_split` set, as test otherwise runs on the val split);
- else found under `--data.root` by the split's name, first match of LAYOUTS (images/<split> + masks/<split>,
  annotations/ or labels/ as the mask folder; CamVid's <split>/ + <split>annot/; <split>/images + <split>/masks).

The class names (label order) are `--data.class_names`, else a classes.txt (one name per line) in a split's masks
folder or its parent (train's first, then val's and test's), or root. num_classes is needed before setup, so
masks are never scanned for it.

Bad input: a missing or empty folder, or a name given twice, is an error naming it, whatever the bad-sample
policy. An image without a mask or a mask without an image is an error at construction (the count and the first
example), and a mask of another size than its image or with labels beyond the classes an error naming both files
when read; with `skip_bad_samples=True` all of these are skipped when read and counted (tasks/segment/data/masks.py).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pytorch_lightning.utilities import rank_zero_info

from deploy.run.images import IMAGE_EXTENSIONS
from tasks.common.formats import DataFormat, DatasetNotFoundError
from tasks.common.images import UnreadableImageError, load_rgb
from tasks.common.splits import split_role
from tasks.segment.data.formats import FORMATS
from tasks.segment.data.masks import MissingMaskError, SegmentationDataset, check_mask, load_mask

logger = logging.getLogger(__name__)

ROLES: tuple[str, ...] = ("train", "val", "test")
FOLDER_OPTIONS: tuple[str, ...] = tuple(f"{role}_{kind}" for role in ROLES for kind in ("images", "masks"))
MASK_SUFFIX = ".png"
CLASSES_FILE = "classes.txt"
# (images folder, masks folder) below root, `{split}` the split's name; the first pair of existing folders wins.
LAYOUTS: tuple[tuple[str, str], ...] = (
    ("images/{split}", "masks/{split}"),
    ("images/{split}", "annotations/{split}"),
    ("images/{split}", "labels/{split}"),
    ("{split}", "{split}annot"),  # CamVid as the SegNet tutorial ships it
    ("{split}/images", "{split}/masks"),
)


@dataclass(frozen=True)
class SplitFolders:
    """One split's images and masks folders and where they came from (for messages)."""

    images: Path
    masks: Path
    source: str

    def describe(self, role: str, split: str) -> str:
        return f"masks format, {role} split {split!r}: images {self.images}, masks {self.masks} ({self.source})"


# -- where a split's folders are ----------------------------------------------------------------------------------
def folder_flags(role: str) -> str:
    return f"--data.{role}_images DIR --data.{role}_masks DIR"


def given_folders(data: Any) -> dict[str, tuple[str | None, str | None]]:
    """role -> (images, masks) arguments, for the roles where either is given."""
    pairs = {role: (data.hparams.get(f"{role}_images"), data.hparams.get(f"{role}_masks")) for role in ROLES}
    return {role: pair for role, pair in pairs.items() if pair != (None, None)}


def discover(root: Path, split: str, role: str) -> SplitFolders:
    """The first of LAYOUTS whose two folders exist under root for `split`; an error listing them otherwise."""
    if not root.is_dir():
        raise DatasetNotFoundError(f"data root {root} {'is not a folder' if root.exists() else 'does not exist'}")
    looked = []
    for images_pattern, masks_pattern in LAYOUTS:
        images, masks = (root / pattern.format(split=split) for pattern in (images_pattern, masks_pattern))
        if images.is_dir() and masks.is_dir():
            return SplitFolders(images, masks, f"found under --data.root as {images_pattern} + {masks_pattern}")
        looked.append(f"{images.relative_to(root)}/ + {masks.relative_to(root)}/")
    raise DatasetNotFoundError(
        f"format='masks': no image and mask folders for the {role} split {split!r} under {root}; looked for "
        f"{', '.join(looked)}. Pass the folders instead: {folder_flags(role)}"
    )


def split_folders(data: Any, role: str, split: str) -> SplitFolders:
    """The folders of the split `split` in `role`: its arguments, else found under root; found once (kept in
    `data.format_cache`) and logged in one line."""
    found = data.format_cache.setdefault("masks_folders", {})
    if (role, split) in found:
        return found[role, split]
    check_masks_arguments(data)
    images, masks = data.hparams.get(f"{role}_images"), data.hparams.get(f"{role}_masks")
    if images is not None and masks is not None:
        folders = SplitFolders(Path(images), Path(masks), f"--data.{role}_images/--data.{role}_masks")
    elif data.root is None:
        raise ValueError(
            f"format='masks' has no folders for the {role} split: pass {folder_flags(role)}, or --data.root DIR "
            f"holding one of the layouts {', '.join(f'{i} + {m}' for i, m in LAYOUTS)}"
        )
    else:
        folders = discover(Path(data.root), split, role)
    rank_zero_info(folders.describe(role, split))
    found[role, split] = folders
    return folders


def split_of(data: Any, role: str) -> str | None:
    return {"train": data.train_split, "val": data.val_split, "test": data.test_split}[role]


def check_masks_arguments(data: Any) -> None:
    """Both folders of a role or neither; test folders need a test_split of their own."""
    given = given_folders(data)
    for role, (images, masks) in given.items():
        if images is None or masks is None:
            have, lack = ("images", "masks") if masks is None else ("masks", "images")
            raise ValueError(
                f"--data.{role}_{have} is given without --data.{role}_{lack}: a split needs both folders "
                f"({folder_flags(role)})"
            )
    if "test" in given and data.test_split in (None, data.val_split):
        raise ValueError(
            "--data.test_images/--data.test_masks are the test split's folders, but test_split is "
            f"{data.test_split!r} (test would run on the val split): pass --data.test_split test as well"
        )


# -- class names ---------------------------------------------------------------------------------------------------
def read_classes_file(path: Path) -> list[str]:
    """One class name per line in label order (trailing blank lines allowed); errors name the file and line."""
    lines = [line.strip() for line in path.read_text().splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise ValueError(f"{path} is empty: write one class name per line, label 0 (e.g. background) first")
    for number, name in enumerate(lines, start=1):
        if not name:
            raise ValueError(f"{path}:{number} is blank: one class name per line, in label order, none left out")
        if name in lines[: number - 1]:
            raise ValueError(f"{path}:{number}: class {name!r} is named twice (first at line {lines.index(name) + 1})")
    return lines


def masks_class_names(data: Any) -> list[str]:
    """classes.txt in a split's masks folder or its parent (train, val, test: the splits whose folders are
    found), or root; an error naming the places and the two ways to give the names otherwise."""
    places: list[Path] = []
    first_error: Exception | None = None
    for role in ROLES:
        split = split_of(data, role)
        if split is None:
            continue
        try:
            masks = split_folders(data, role, split).masks
        except (DatasetNotFoundError, ValueError) as error:
            first_error = first_error or error
            continue
        places += [masks, masks.parent]
    if not places and first_error is not None:
        raise first_error
    if data.root is not None:
        places.append(Path(data.root))
    places = list(dict.fromkeys(places))
    for place in places:
        if (place / CLASSES_FILE).is_file():
            names = read_classes_file(place / CLASSES_FILE)
            rank_zero_info(f"masks format: {len(names)} class names from {place / CLASSES_FILE}")
            return names
    raise ValueError(
        "format='masks' needs the class names (label order, one per mask value; 255 is ignore): pass "
        f"--data.class_names [background, road, ...] or write {CLASSES_FILE} (one name per line) into one of "
        f"{', '.join(str(p) for p in places)}"
    )


# -- pairing -------------------------------------------------------------------------------------------------------
def walk(folder: Path, skip: Path | None = None) -> Iterator[Path]:
    """Every file below `folder`, hidden files and folders (and the folder `skip`) left out."""
    for directory, subfolders, names in os.walk(folder, followlinks=True):
        subfolders[:] = [s for s in subfolders if not s.startswith(".") and Path(directory, s) != skip]
        yield from (Path(directory, name) for name in names if not name.startswith("."))


def by_key(folder: Path, files: Sequence[Path]) -> dict[str, Path]:
    """relative path without extension -> file; two files with one key are an error naming both."""
    keyed: dict[str, Path] = {}
    for path in sorted(files):
        key = path.relative_to(folder).with_suffix("").as_posix()
        if key in keyed:
            raise ValueError(f"{keyed[key]} and {path} have the same name; which one pairs with the other folder?")
        keyed[key] = path
    return keyed


def describe(paths: Sequence[Path]) -> str:
    return f"{len(paths)}, e.g. {paths[0]}" if paths else "0"


class MaskFolderSegmentation(SegmentationDataset):
    """One split: the images of `images` paired with the class-index PNG masks of `masks` (see the module docstring).

    `samples` are (image or None, mask) in key order; with `skip_bad_samples` the unpaired files stay in as
    samples (the image without mask, or the mask without image), so they are skipped and counted when read.
    `unpaired_images` and `unpaired_masks` count them.
    """

    def __init__(
        self,
        images: str | Path,
        masks: str | Path,
        transform: Any,
        class_names: Sequence[str],
        skip_bad_samples: bool = False,
        source: str = "",
    ) -> None:
        super().__init__(class_names, transform, skip_bad_samples)
        self.images, self.masks = Path(images), Path(masks)
        where = f" ({source})" if source else ""
        for folder, kind in ((self.images, "images"), (self.masks, "masks")):
            if not folder.is_dir():
                raise DatasetNotFoundError(f"{kind} folder {folder}{where} does not exist")
        image_files, mask_files, others = [], [], []
        for path in walk(self.images, skip=self.masks):
            (image_files if path.suffix.lower() in IMAGE_EXTENSIONS else others).append(path)
        for path in walk(self.masks, skip=self.images):
            (mask_files if path.suffix.lower() == MASK_SUFFIX else others).append(path)
        if not image_files:
            raise ValueError(f"images folder {self.images}{where} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        if not mask_files:
            found = [p for p in others if p.is_relative_to(self.masks)]
            raise ValueError(
                f"masks folder {self.masks}{where} holds no {MASK_SUFFIX} masks"
                + (f" (it holds {describe(found)}; masks must be lossless class-index PNGs)" if found else "")
            )
        image_keys, mask_keys = by_key(self.images, image_files), by_key(self.masks, mask_files)
        no_mask = [image_keys[k] for k in image_keys if k not in mask_keys]
        no_image = [mask_keys[k] for k in mask_keys if k not in image_keys]
        self.unpaired_images, self.unpaired_masks = len(no_mask), len(no_image)
        if no_mask or no_image:
            message = (
                f"{self.images} and {self.masks}{where} do not pair up (by relative path and name without "
                f"extension; masks are {MASK_SUFFIX}): images without a mask: {describe(no_mask)}; "
                f"masks without an image: {describe(no_image)}"
            )
            if not skip_bad_samples:
                error = MissingMaskError if no_mask else FileNotFoundError
                raise error(f"{message}; pass --data.skip_bad_samples true to skip and count them instead")
            logger.warning("%s; they are skipped and counted when read", message)
        keys = sorted(set(image_keys) | set(mask_keys))
        self.samples: list[tuple[Path | None, Path]] = [
            (image_keys.get(k), mask_keys.get(k, self.masks / f"{k}{MASK_SUFFIX}")) for k in keys
        ]

    def __len__(self) -> int:
        return len(self.samples)

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image_path, mask_path = self.samples[index]
        if image_path is None:
            raise UnreadableImageError(
                f"mask {mask_path} has no image in {self.images} (any of {', '.join(IMAGE_EXTENSIONS)})"
            )
        image = load_rgb(image_path)
        return image, check_mask(load_mask(mask_path), image.shape, self.num_classes, mask_path, image_path)


# -- the "masks" format of the data module ---------------------------------------------------------------------------
def build_masks(data: Any, split: str, transform: Any, train: bool) -> MaskFolderSegmentation:
    """One split from its folder arguments or the layout found under root."""
    folders = split_folders(data, split_role(data, split, train), split)
    return MaskFolderSegmentation(
        folders.images,
        folders.masks,
        transform,
        class_names=data.class_names,
        skip_bad_samples=data.skip_bad_samples,
        source=folders.source,
    )


MASKS_FORMAT = FORMATS.register(
    DataFormat(
        name="masks",
        build=build_masks,
        class_names=masks_class_names,
        options=FOLDER_OPTIONS,
        root_alternatives=tuple(f"{role}_images" for role in ROLES),
    )
)
