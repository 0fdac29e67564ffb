"""Pascal VOC detection data in the VOCdevkit layout, read with xml.etree.

`root` is either a year folder (`Annotations/*.xml`, `JPEGImages/`, `ImageSets/Main/<split>.txt`), with splits
such as "trainval", or a VOCdevkit folder holding `VOC2007/`, `VOC2012/`, with splits such as "VOC2007/trainval".
Several splits join with "+": "VOC2007/trainval+VOC2012/trainval" is the usual 07+12 training set.

A folder with `Annotations/` and `JPEGImages/` but no `ImageSets/` (a labelImg or CVAT export) is read whole:
every annotated image, its images found by stem whatever their extension, the split names unused; the data
module holds out `val_fraction` of them for validation (seeded, see tasks/common/splits.py), and its classes
are read from the XMLs (sorted; VOC's 20 when every name is a VOC class) unless `class_names` are given.

Coordinates: VOC boxes are 1-based inclusive pixel indices; like torchvision's and the devkit's readers we
subtract 1 from xmin/ymin and keep xmax/ymax, which gives continuous x1, y1, x2, y2 with width xmax - xmin + 1.
`difficult` objects are not trained on; evaluation ignores them (`iscrowd: 1` in `coco_gt`, flagged in
`voc_ground_truth()`). Image ids are 1, 2, ... in the order of the (joined) split lists, or of the sorted stems of
a folder read whole (kept by both parts of its held-out split).
"""

from __future__ import annotations

import contextlib
import io
import logging
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pycocotools.coco import COCO
from pytorch_lightning.utilities import rank_zero_info

from tasks.common.categories import BACKGROUND, VOC_CLASS_NAMES, VOC_CLASSES
from tasks.common.images import load_rgb
from tasks.common.splits import DEFAULT_VAL_FRACTION, HeldOutSplit, split_role, validation_mask
from tasks.detect.data.formats import FORMATS, DetectionFormat
from tasks.detect.data.records import AnnotatedImages, DetectionRecord
from tasks.detect.data.transforms import clip_and_drop_small

logger = logging.getLogger(__name__)


def voc_split_folders(root: str | Path, split: str) -> list[tuple[Path, str]]:
    """(year folder, split name) for each "+"-joined part of `split`, each checked to have its list file."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"VOC root {root} does not exist")
    parts = [part.strip() for part in split.split("+") if part.strip()]
    if not parts:
        raise ValueError(f"VOC split {split!r} is empty; use e.g. 'trainval' or 'VOC2007/trainval+VOC2012/trainval'")
    folders = []
    for part in parts:
        if "/" in part:
            year, name = part.rsplit("/", 1)
            year_folder = root / year
        else:
            year, name, year_folder = "", part, root
        if not (year_folder / "Annotations").is_dir():
            years = sorted(p.name for p in root.iterdir() if (p / "Annotations").is_dir())
            hint = (
                f"; this looks like a VOCdevkit folder: name splits as {years[0]}/{name}" if years and not year else ""
            )
            raise FileNotFoundError(f"VOC folder {year_folder / 'Annotations'} not found (split {part!r}){hint}")
        list_file = year_folder / "ImageSets" / "Main" / f"{name}.txt"
        if not list_file.is_file():
            available = sorted(p.stem for p in (year_folder / "ImageSets" / "Main").glob("*.txt") if "_" not in p.stem)
            raise FileNotFoundError(f"VOC split list {list_file} not found; splits there: {available}")
        folders.append((year_folder, name))
    return folders


def without_lists(root: str | Path) -> bool:
    """Whether `root` is a folder of Annotations/ without ImageSets/, read whole (see the module docstring)."""
    return (Path(root) / "Annotations").is_dir() and not (Path(root) / "ImageSets").exists()


def _parse(path: Path) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except (OSError, ET.ParseError) as error:
        raise ValueError(f"cannot parse VOC annotation {path}: {error}") from error


def xml_class_names(root: str | Path) -> list[str]:
    """The class names of a folder read whole: ["background", *the object names of all its XMLs, sorted], or
    VOC's when every name is one of VOC's 20 classes."""
    names = {
        (obj.findtext("name") or "").strip()
        for xml in sorted((Path(root) / "Annotations").glob("*.xml"))
        for obj in _parse(xml).iter("object")
    }
    if {name.lower() for name in names} <= set(VOC_CLASSES):
        return list(VOC_CLASS_NAMES)
    return [BACKGROUND, *sorted(names)]


def parse_voc_xml(
    path: Path, classes: Sequence[str] = VOC_CLASSES
) -> tuple[int | None, int | None, np.ndarray, np.ndarray, np.ndarray]:
    """(width, height, boxes float32 [N, 4] x1 y1 x2 y2 continuous, labels int64 1..K by `classes`, difficult
    bool). A name is matched as written, else lower-cased (VOC's own are lower case)."""
    tree = _parse(path)
    labels_of = {name: label for label, name in enumerate(classes, start=1)}
    size = tree.find("size")
    width = int(float(size.findtext("width", "0"))) if size is not None else 0
    height = int(float(size.findtext("height", "0"))) if size is not None else 0
    boxes, labels, difficult = [], [], []
    for obj in tree.iter("object"):
        name = (obj.findtext("name") or "").strip()
        label = labels_of.get(name, labels_of.get(name.lower()))
        if label is None:
            raise ValueError(f"{path}: unknown VOC class {name!r}; valid names: {list(classes)}")
        box = obj.find("bndbox")
        if box is None:
            raise ValueError(f"{path}: object {name!r} has no <bndbox>")
        x1, y1, x2, y2 = (float(box.findtext(key, "nan")) for key in ("xmin", "ymin", "xmax", "ymax"))
        boxes.append([x1 - 1.0, y1 - 1.0, x2, y2])
        labels.append(label)
        difficult.append((obj.findtext("difficult") or "0").strip() == "1")
    return (
        width or None,
        height or None,
        np.array(boxes, dtype=np.float32).reshape(-1, 4),
        np.array(labels, dtype=np.int64),
        np.array(difficult, dtype=bool),
    )


class VocDetection(AnnotatedImages):
    """One (possibly "+"-joined) split of a VOC dataset, or a folder without ImageSets/ read whole, of which `part`
    "train" or "val" is one part of its held-out split (the val part carries `held_out`); `transform` is a
    DetectionTransform, `class_names` the labels ("background" first).

    `dropped_boxes` counts boxes under 1 px wide or high after clipping (one warning with the count).
    `coco_gt` is built in memory on first use, with difficult objects as `iscrowd: 1`. A missing, empty or
    malformed XML, or a class name not in `class_names`, is an error naming the XML. A missing or unreadable image,
    or one whose size differs from its XML's, is a bad sample when read: an error, or with `skip_bad_samples`
    skipped and counted in `skipped_images` (unless its XML lacks <size>: then its size is read at construction,
    and an unreadable image is an UnreadableImageError there).
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        transform: Any,
        skip_bad_samples: bool = False,
        class_names: Sequence[str] = VOC_CLASS_NAMES,
        part: Literal["all", "train", "val"] = "all",
        val_fraction: float = DEFAULT_VAL_FRACTION,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.dropped_boxes = 0
        self.held_out: HeldOutSplit | None = None
        self._coco_gt: COCO | None = None
        self._classes = list(class_names[1:])
        if without_lists(root):
            records = self._whole_folder(part, val_fraction)
        else:
            if part != "all":
                raise ValueError(f"VOC {root}: part={part!r} is for a folder without ImageSets/, which this has")
            records = []
            seen: set[tuple[Path, str]] = set()
            for year_folder, name in voc_split_folders(root, split):
                list_file = year_folder / "ImageSets" / "Main" / f"{name}.txt"
                for line in list_file.read_text().split("\n"):
                    stem = line.strip().split(" ")[0]
                    if not stem or (year_folder, stem) in seen:
                        continue
                    seen.add((year_folder, stem))
                    records.append(self._record(year_folder, stem, image_id=len(records) + 1))
        label_to_category_id = {label: label for label in range(1, len(class_names))}
        super().__init__(records, transform, label_to_category_id, class_names, skip_bad_samples)
        if self.dropped_boxes:
            logger.warning("VOC %s %s: dropped %d boxes under 1 px wide or high", root, split, self.dropped_boxes)

    def _whole_folder(self, part: str, val_fraction: float) -> list[DetectionRecord]:
        """The records of every XML in Annotations/ (image ids by sorted stem), or of one part of its held-out
        split; each image is JPEGImages/<stem>.<any extension>."""
        stems = sorted(p.stem for p in (self.root / "Annotations").glob("*.xml"))
        folder = self.root / "JPEGImages"
        images = {p.stem: p for p in sorted(folder.iterdir()) if p.is_file()} if folder.is_dir() else {}
        positions = np.arange(len(stems))
        if part != "all":
            val = validation_mask(len(stems), val_fraction, f"VOC folder {self.root}")
            positions = np.flatnonzero(val if part == "val" else ~val)
            if part == "val":
                names = [images.get(stems[i], folder / f"{stems[i]}.jpg").name for i in positions]
                self.held_out = HeldOutSplit(str(self.root), names, int((~val).sum()), val_fraction)
        return [self._record(self.root, stems[i], int(i) + 1, images.get(stems[i])) for i in positions]

    def _record(self, year_folder: Path, stem: str, image_id: int, path: Path | None = None) -> DetectionRecord:
        xml = year_folder / "Annotations" / f"{stem}.xml"
        if not xml.is_file():
            raise FileNotFoundError(f"VOC annotation {xml} not found (listed in the split file)")
        width, height, boxes, labels, difficult = parse_voc_xml(xml, self._classes)
        path = path if path is not None else year_folder / "JPEGImages" / f"{stem}.jpg"
        if width is None or height is None:
            # An XML without <size> (rare): read the image itself (EXIF orientation applied, as the boxes'
            # frame); an unreadable image is then an UnreadableImageError here, naming it.
            height, width = load_rgb(path).shape[:2]
        clipped, valid = clip_and_drop_small(boxes, height, width)
        self.dropped_boxes += int((~valid).sum())
        return DetectionRecord(
            image_id, path, width, height, clipped[valid], labels[valid], difficult[valid], source=str(xml)
        )

    @property
    def coco_gt(self) -> COCO:
        """The ground truth as an in-memory COCO object (original pixels; difficult -> iscrowd 1)."""
        if self._coco_gt is None:
            images, annotations = [], []
            for record in self.records:
                images.append(
                    {
                        "id": record.image_id,
                        "file_name": str(record.path),
                        "width": record.width,
                        "height": record.height,
                    }
                )
                for box, label, ignore in zip(record.boxes, record.labels, record.ignore, strict=True):
                    x1, y1, x2, y2 = (float(v) for v in box)
                    annotations.append(
                        {
                            "id": len(annotations) + 1,
                            "image_id": record.image_id,
                            "category_id": int(label),
                            "bbox": [x1, y1, x2 - x1, y2 - y1],
                            "area": (x2 - x1) * (y2 - y1),
                            "iscrowd": int(ignore),
                        }
                    )
            categories = [{"id": i + 1, "name": name, "supercategory": "voc"} for i, name in enumerate(self._classes)]
            coco = COCO()
            coco.dataset = {"images": images, "annotations": annotations, "categories": categories}
            with contextlib.redirect_stdout(io.StringIO()):
                coco.createIndex()
            self._coco_gt = coco
        return self._coco_gt


# -- the "voc" format of the data module -----------------------------------------------------------------------------
def voc_class_names(data: Any) -> list[str]:
    """VOC's classes, or for a folder read whole those of its XMLs (read once per data module)."""
    if not without_lists(data.data_root):
        return list(VOC_CLASS_NAMES)
    if "voc_class_names" not in data.format_cache:
        names = xml_class_names(data.data_root)
        rank_zero_info(
            f"VOC folder {data.data_root} has no ImageSets/: reading all its annotated images, with the "
            f"{len(names) - 1} classes of its XMLs {names[1:]}"
        )
        data.format_cache["voc_class_names"] = names
    return list(data.format_cache["voc_class_names"])


def voc_label_to_category_id(data: Any) -> dict[int, int]:
    """VOC's category ids are its labels 1..K."""
    return {label: label for label in range(1, len(data.class_names))}


def build_voc(data: Any, split: str, transform: Any, train: bool) -> VocDetection:
    """One split; a folder without ImageSets/ gives its held-out split's train part to training, its val part to
    validation and test."""
    part = ("train" if split_role(data, split, train) == "train" else "val") if without_lists(data.data_root) else "all"
    return VocDetection(
        data.data_root,
        split,
        transform,
        skip_bad_samples=data.skip_bad_samples,
        class_names=data.class_names,
        part=part,
        val_fraction=data.val_fraction,
    )


VOC_FORMAT = FORMATS.register(
    DetectionFormat(
        name="voc",
        build=build_voc,
        class_names=voc_class_names,
        label_to_category_id=voc_label_to_category_id,
    )
)
