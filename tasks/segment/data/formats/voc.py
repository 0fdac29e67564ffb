"""Pascal VOC semantic segmentation (palette PNG masks, also the synthetic data's layout), and the "voc" format.

Items, mask values and the bad-sample policy: see tasks/segment/data/masks.py.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tasks.common.categories import VOC_CLASS_NAMES
from tasks.common.formats import DataFormat, fixed_class_names
from tasks.common.images import load_rgb
from tasks.segment.data.formats import FORMATS
from tasks.segment.data.masks import MissingMaskError, SegmentationDataset, check_mask, load_mask

logger = logging.getLogger(__name__)


# -- Pascal VOC ----------------------------------------------------------------------------------------------------
def resolve_voc_root(root: str | Path) -> Path:
    """The VOC year folder: `root` itself, or VOC2012 inside a VOCdevkit folder (also root/VOCdevkit/VOC2012)."""
    root = Path(root)
    for folder in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (folder / "ImageSets" / "Segmentation").is_dir():
            return folder
    raise FileNotFoundError(
        f"VOC segmentation data not found under {root}: expected a year folder with JPEGImages/, "
        "SegmentationClass/ and ImageSets/Segmentation/<split>.txt, or a VOCdevkit folder holding VOC2012/"
    )


def read_voc_split(year_folder: Path, split: str) -> list[str]:
    """The image stems of ImageSets/Segmentation/<split>.txt in order, duplicates dropped."""
    folder = year_folder / "ImageSets" / "Segmentation"
    list_file = folder / f"{split}.txt"
    if not list_file.is_file():
        available = sorted(p.stem for p in folder.glob("*.txt"))
        raise FileNotFoundError(f"VOC segmentation split list {list_file} not found; splits there: {available}")
    stems = (line.strip().split(" ")[0] for line in list_file.read_text().splitlines())
    return list(dict.fromkeys(stem for stem in stems if stem))


class VocSegmentation(SegmentationDataset):
    """One split of a VOC-layout segmentation dataset (also the synthetic one), optionally with an extra list.

    `extra_split` (e.g. the SBD-augmented "train_aug") is read from the same ImageSets/Segmentation/ folder, with
    masks from SegmentationClassAug/ when that folder exists, else SegmentationClass/. Stems of the main split
    keep their SegmentationClass mask; extra stems in `exclude` (the validation list) are left out and counted
    in `excluded_extra` so that no validation image is trained on.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        transform: Any,
        extra_split: str | None = None,
        exclude: Collection[str] = (),
        class_names: Sequence[str] = VOC_CLASS_NAMES,
        skip_bad_samples: bool = False,
    ) -> None:
        super().__init__(class_names, transform, skip_bad_samples)
        self.root = resolve_voc_root(root)
        self.split = split
        stems = read_voc_split(self.root, split)
        self.samples: list[tuple[Path, Path]] = self._pairs(stems, self.root / "SegmentationClass")
        self.excluded_extra = 0
        if extra_split is not None:
            aug = self.root / "SegmentationClassAug"
            mask_folder = aug if aug.is_dir() else self.root / "SegmentationClass"
            seen, excluded = set(stems), set(exclude)
            extra = [s for s in read_voc_split(self.root, extra_split) if s not in seen]
            self.excluded_extra = sum(s in excluded for s in extra)
            self.samples += self._pairs([s for s in extra if s not in excluded], mask_folder)
            logger.info(
                "VOC %s: split %r (%d images) + %r (%d more, masks from %s/, %d left out as validation images)",
                self.root,
                split,
                len(stems),
                extra_split,
                len(extra) - self.excluded_extra,
                mask_folder.name,
                self.excluded_extra,
            )
        if not skip_bad_samples:
            self._check_files_exist()

    def _pairs(self, stems: Iterable[str], mask_folder: Path) -> list[tuple[Path, Path]]:
        return [(self.root / "JPEGImages" / f"{s}.jpg", mask_folder / f"{s}.png") for s in stems]

    def _check_files_exist(self) -> None:
        """Fail before training starts, not in the middle of an epoch, when listed files are missing."""
        for position, kind in ((0, "image"), (1, "mask")):
            missing = [pair[position] for pair in self.samples if not pair[position].is_file()]
            if missing:
                error = MissingMaskError if kind == "mask" else FileNotFoundError
                raise error(
                    f"VOC {kind} {missing[0]} not found ({len(missing)} {kind}s of split {self.split!r} in "
                    f"{self.root} are missing); pass skip_bad_samples=True to skip and count them instead"
                )

    def __len__(self) -> int:
        return len(self.samples)

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image_path, mask_path = self.samples[index]
        image = load_rgb(image_path)
        return image, check_mask(load_mask(mask_path), image.shape, self.num_classes, mask_path, image_path)


# -- the "voc" format of the data module -----------------------------------------------------------------------------
def build_voc(data: Any, split: str, transform: Any, train: bool) -> VocSegmentation:
    """One split; the training split with `extra_train_split` joined, its validation images left out."""
    extra, exclude = None, ()
    if train and data.extra_train_split is not None:
        extra = data.extra_train_split
        exclude = read_voc_split(resolve_voc_root(data.data_root), data.val_split)
    return VocSegmentation(
        data.data_root,
        split,
        transform,
        extra_split=extra,
        exclude=exclude,
        class_names=data.class_names,
        skip_bad_samples=data.skip_bad_samples,
    )


VOC_FORMAT = FORMATS.register(
    DataFormat(
        name="voc", build=build_voc, class_names=fixed_class_names(VOC_CLASS_NAMES), options=("extra_train_split",)
    )
)
