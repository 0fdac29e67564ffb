"""Semantic-segmentation datasets: Pascal VOC (palette PNG masks), COCO instances as VOC classes, predict folders.

Items: `(image float32 [3, H, W], mask int64 [H, W])` as made by the transform; mask values are class labels
0..num_classes-1 (0 = background) or IGNORE_INDEX (255: object borders, void, padding, COCO overlaps).

Bad samples (a missing or unreadable image, a missing or unreadable mask, a mask whose size differs from its
image, mask labels outside 0..num_classes-1 other than 255) raise an error naming the file(s) by default. With
`skip_bad_samples=True` each is logged with its file name, counted in `skipped_samples` (across DataLoader
workers; every event counts) and replaced by the next good item, so the number of items never changes but the
caller must report the count: an evaluation with skips is computed partly on substitute items.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from pycocotools import mask as mask_utils

from tasks.data.coco import check_coco_references, coco_annotation_file, load_coco
from tasks.data.images import (
    PredictImages,
    SkippingDataset,
    UnreadableImageError,
    load_rgb,
    size_mismatch_message,
)
from tasks.data.segmentation_transforms import IGNORE_INDEX
from tasks.data.voc import VOC_CLASS_NAMES

logger = logging.getLogger(__name__)

# PIL modes whose pixel values are class indices (palette, 8-bit grey, 32-bit and 16-bit integer).
MASK_MODES: tuple[str, ...] = ("P", "L", "I", "I;16", "I;16B", "I;16L")

# torchvision references/segmentation/coco_utils.py: COCO category ids of the 20 VOC classes in VOC label order
# (0 = background, then aeroplane=5 (airplane), bicycle=2, ... tvmonitor=72 (tv)).
COCO_VOC_CATEGORY_IDS: tuple[int, ...] = (0, 5, 2, 16, 9, 44, 6, 3, 17, 62, 21, 67, 18, 19, 4, 1, 64, 20, 63, 7, 72)
# The reference's _coco_remove_images_without_annotations: a training image is kept when the `area` of its
# VOC-category annotations sums to more than this many pixels.
MIN_ANNOTATED_AREA = 1000.0


class MissingMaskError(FileNotFoundError):
    """A mask file listed for an image does not exist."""


class InvalidMaskError(ValueError):
    """A mask that does not fit its image or holds labels outside the classes."""


# What `skip_bad_samples=True` skips: everything wrong with one sample's files, never a programming error.
BAD_SAMPLE_ERRORS: tuple[type[Exception], ...] = (UnreadableImageError, MissingMaskError, InvalidMaskError)


def voc_palette() -> list[int]:
    """The VOC colour map as a flat PIL palette (768 values): label 1 = (128, 0, 0), ..., 255 = (224, 224, 192)."""
    palette: list[int] = []
    for label in range(256):
        red = green = blue = 0
        bits = label
        for shift in range(7, -1, -1):
            red |= (bits & 1) << shift
            green |= ((bits >> 1) & 1) << shift
            blue |= ((bits >> 2) & 1) << shift
            bits >>= 3
        palette += [red, green, blue]
    return palette


def save_palette_mask(path: str | Path, mask: np.ndarray) -> None:
    """Write a uint8 label mask [H, W] as a VOC-style palette PNG (mode "P", the VOC colours)."""
    image = Image.fromarray(np.asarray(mask, dtype=np.uint8), mode="P")
    image.putpalette(voc_palette())
    image.save(path)


def load_mask(path: str | Path) -> np.ndarray:
    """The class indices of a mask image (palette or grayscale PNG; palette indices, not colours) as [H, W]."""
    path = Path(path)
    if not path.is_file():
        raise MissingMaskError(f"mask {path} not found")
    try:
        with Image.open(path) as opened:
            if opened.mode not in MASK_MODES:
                raise InvalidMaskError(
                    f"mask {path} has PIL mode {opened.mode!r}; a mask holds class indices: a palette ('P') or "
                    f"grayscale ('L') PNG (valid modes: {list(MASK_MODES)}), not colours"
                )
            return np.array(opened)
    except (OSError, UnidentifiedImageError, SyntaxError) as error:
        raise UnreadableImageError(f"cannot read mask {path}: {error}") from error


def check_mask(
    mask: np.ndarray, image_shape: Sequence[int], num_classes: int, mask_source: str | Path, image_path: str | Path
) -> np.ndarray:
    """Return `mask` as uint8 after checking its size against the image and its labels against the classes."""
    if tuple(mask.shape[:2]) != tuple(image_shape[:2]):
        raise InvalidMaskError(
            f"mask {mask_source} is {mask.shape[1]}x{mask.shape[0]} (WxH) but its image {image_path} is "
            f"{image_shape[1]}x{image_shape[0]}; a mask must match its image pixel for pixel"
        )
    bad = mask[((mask < 0) | (mask >= num_classes)) & (mask != IGNORE_INDEX)]
    if bad.size:
        values = np.unique(bad)
        shown = ", ".join(str(v) for v in values[:10]) + (", ..." if len(values) > 10 else "")
        raise InvalidMaskError(
            f"mask {mask_source} has labels [{shown}] outside 0..{num_classes - 1} (valid: the {num_classes} "
            f"class labels and {IGNORE_INDEX} = ignore)"
        )
    return mask.astype(np.uint8)


class SegmentationDataset(SkippingDataset):
    """Base: subclasses implement `__len__` and `_read(index) -> (uint8 RGB image, checked uint8 mask)`."""

    skip_description = "bad sample"

    def __init__(self, class_names: Sequence[str], transform: Any, skip_bad_samples: bool) -> None:
        super().__init__()
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self.transform = transform
        self.skip_bad_samples = skip_bad_samples
        self.skippable_errors = BAD_SAMPLE_ERRORS if skip_bad_samples else ()

    @property
    def skipped_samples(self) -> int:
        """How many times a bad sample was replaced by the next good one (all processes, every event)."""
        return self.skipped_images

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _load_item(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self._read(index)
        return self.transform(image, mask)


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


# -- COCO as VOC classes -------------------------------------------------------------------------------------------
def instance_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """One annotation's `segmentation` (polygons, uncompressed or compressed RLE) as a uint8 0/1 mask [H, W].

    As the reference's convert_coco_poly_to_mask: frPyObjects, decode, union of the parts.
    """
    if isinstance(segmentation, list) and not segmentation:
        return np.zeros((height, width), dtype=np.uint8)
    if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), str):
        rle: Any = {"size": segmentation["size"], "counts": segmentation["counts"].encode()}  # compressed RLE
    else:
        rle = mask_utils.frPyObjects(segmentation, height, width)
    decoded = mask_utils.decode(rle)
    if decoded.ndim < 3:
        decoded = decoded[..., None]
    if decoded.shape[:2] != (height, width):
        raise ValueError(f"its RLE is {decoded.shape[1]}x{decoded.shape[0]}, the image {width}x{height}")
    return decoded.any(axis=2).astype(np.uint8)


def coco_semantic_mask(
    annotations: Sequence[Mapping[str, Any]],
    height: int,
    width: int,
    category_to_label: Mapping[int, int],
    source: str = "annotations",
) -> np.ndarray:
    """Merge instance annotations into one uint8 label mask [H, W], exactly as torchvision's reference.

    references/segmentation/coco_utils.py (FilterAndRemapCocoCategories + ConvertCocoPolysToMask): keep the
    annotations of mapped categories (crowd ones included), `target = (masks * cats[:, None, None]).max(0)`,
    then `target[masks.sum(0) > 1] = 255`: every pixel covered by two or more instances, of the same class or
    not, becomes ignore. Unmapped categories are background.
    """
    kept = [a for a in annotations if a["category_id"] in category_to_label]
    if not kept:
        return np.zeros((height, width), dtype=np.uint8)
    masks = []
    for annotation in kept:
        try:
            masks.append(instance_mask(annotation["segmentation"], height, width))
        except Exception as error:  # pycocotools raises a bare Exception for unsupported input
            raise InvalidMaskError(
                f"{source}: annotation {annotation.get('id')} has an unreadable 'segmentation' "
                f"(valid: polygons [[x, y, ...], ...] or RLE {{'size', 'counts'}}): {error}"
            ) from error
    stacked = np.stack(masks)
    labels = np.array([category_to_label[a["category_id"]] for a in kept], dtype=np.uint8)
    target = (stacked * labels[:, None, None]).max(axis=0)
    target[stacked.sum(axis=0, dtype=np.int64) > 1] = IGNORE_INDEX
    return target


def annotated_area(annotations: Iterable[Mapping[str, Any]], image_info: Mapping[str, Any]) -> float:
    """Sum of the annotations' `area` (decoded from `segmentation` where `area` is absent)."""
    total = 0.0
    for annotation in annotations:
        if "area" in annotation:
            total += float(annotation["area"])
        else:
            total += float(instance_mask(annotation["segmentation"], image_info["height"], image_info["width"]).sum())
    return total


def coco_image_folder(root: Path, split: str, first_file_name: str | None) -> Path:
    """root/<split>, root/images/<split>, or root itself when file names carry their sub-path (as CocoDetection)."""
    folders = [root / split, root / "images" / split]
    if first_file_name is not None:
        for folder in [*folders, root]:
            if (folder / first_file_name).is_file():
                return folder
    for folder in folders:
        if folder.is_dir():
            return folder
    raise FileNotFoundError(f"image folder for COCO split {split!r} not found: tried {folders[0]} and {folders[1]}")


class CocoSegmentation(SegmentationDataset):
    """A COCO split (annotations/instances_<split>.json, images in <split>/) as masks of the 20 VOC classes.

    With `remove_images_without_annotations` (training), images whose VOC-category annotations cover
    `min_annotated_area` pixels or less (by their `area`) are left out, as the reference does; the number is in
    `removed_images` and logged. Evaluation keeps every image. An empty or invalid annotation file, an
    annotation whose category_id or image_id the file does not list, or an image without width/height is a
    ValueError naming the file (and the id) at construction, whatever `skip_bad_samples`; an image whose size
    differs from its `width`/`height` is a bad sample (InvalidMaskError).
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        transform: Any,
        remove_images_without_annotations: bool = False,
        min_annotated_area: float = MIN_ANNOTATED_AREA,
        skip_bad_samples: bool = False,
    ) -> None:
        super().__init__(VOC_CLASS_NAMES, transform, skip_bad_samples)
        self.root = Path(root)
        self.split = split
        self.annotation_file = coco_annotation_file(root, split)
        self.coco = load_coco(self.annotation_file)
        check_coco_references(self.coco, self.annotation_file)
        self.category_to_label = {cid: label for label, cid in enumerate(COCO_VOC_CATEGORY_IDS) if label > 0}
        image_ids = sorted(self.coco.imgs)
        self.removed_images = 0
        if remove_images_without_annotations:
            kept = [
                i for i in image_ids if annotated_area(self._voc_annotations(i), self.coco.imgs[i]) > min_annotated_area
            ]
            self.removed_images = len(image_ids) - len(kept)
            logger.info(
                "%s: left out %d of %d images whose VOC-category annotations cover <= %g px",
                self.annotation_file,
                self.removed_images,
                len(image_ids),
                min_annotated_area,
            )
            image_ids = kept
        if not image_ids:
            raise ValueError(f"{self.annotation_file}: no images to use (removed_images={self.removed_images})")
        self.image_ids = image_ids
        self.image_folder = coco_image_folder(self.root, split, self.coco.imgs[image_ids[0]]["file_name"])

    def _voc_annotations(self, image_id: int) -> list[dict[str, Any]]:
        return [a for a in self.coco.imgToAnns.get(image_id, []) if a["category_id"] in self.category_to_label]

    def __len__(self) -> int:
        return len(self.image_ids)

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image_id = self.image_ids[index]
        info = self.coco.imgs[image_id]
        path = self.image_folder / info["file_name"]
        image = load_rgb(path)
        height, width = int(info["height"]), int(info["width"])
        source = f"{self.annotation_file} (image id {image_id})"
        if image.shape[:2] != (height, width):
            raise InvalidMaskError(size_mismatch_message(path, image.shape, width, height, source))
        mask = coco_semantic_mask(self._voc_annotations(image_id), height, width, self.category_to_label, source)
        return image, mask


# -- predict -------------------------------------------------------------------------------------------------------
class SegmentationPredictImages(PredictImages):
    """The images of a folder (or a file list) at their original size: items are (image, {"path", "orig_size"}).

    `orig_size` is (H, W). Unreadable images raise, or with `skip_bad_samples` are skipped and counted.
    """

    def __init__(
        self, files: str | Path | Sequence[str | Path], transform: Any, skip_bad_samples: bool = False
    ) -> None:
        super().__init__(files, transform)
        if not skip_bad_samples:
            self.skippable_errors = ()

    @property
    def skipped_samples(self) -> int:
        """How many times an unreadable image was replaced by the next readable one (all processes)."""
        return self.skipped_images

    def _load_item(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        path = self.files[index]
        image = load_rgb(path)
        tensor, _ = self.transform(image)
        return tensor, {"path": str(path), "orig_size": (int(image.shape[0]), int(image.shape[1]))}
