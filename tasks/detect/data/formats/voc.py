"""Pascal VOC detection data in the VOCdevkit layout, read with xml.etree.

`root` is either a year folder (`Annotations/*.xml`, `JPEGImages/`, `ImageSets/Main/<split>.txt`), with splits
such as "trainval", or a VOCdevkit folder holding `VOC2007/`, `VOC2012/`, with splits such as "VOC2007/trainval".
Several splits join with "+": "VOC2007/trainval+VOC2012/trainval" is the usual 07+12 training set.

Coordinates: VOC boxes are 1-based inclusive pixel indices; like torchvision's and the devkit's readers we
subtract 1 from xmin/ymin and keep xmax/ymax, which gives continuous x1, y1, x2, y2 with width xmax - xmin + 1.
`difficult` objects are not trained on; evaluation ignores them (`iscrowd: 1` in `coco_gt`, flagged in
`voc_ground_truth()`). Image ids are 1, 2, ... in the order of the (joined) split lists.
"""

from __future__ import annotations

import contextlib
import io
import logging
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO

from tasks.common.categories import VOC_CLASS_NAMES, VOC_CLASSES
from tasks.common.datamodule import fixed_class_names
from tasks.common.images import load_rgb
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


def parse_voc_xml(path: Path) -> tuple[int | None, int | None, np.ndarray, np.ndarray, np.ndarray]:
    """(width, height, boxes float32 [N, 4] x1 y1 x2 y2 continuous, labels int64 1..20, difficult bool)."""
    try:
        tree = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as error:
        raise ValueError(f"cannot parse VOC annotation {path}: {error}") from error
    size = tree.find("size")
    width = int(float(size.findtext("width", "0"))) if size is not None else 0
    height = int(float(size.findtext("height", "0"))) if size is not None else 0
    boxes, labels, difficult = [], [], []
    for obj in tree.iter("object"):
        name = (obj.findtext("name") or "").strip().lower()
        if name not in VOC_CLASSES:
            raise ValueError(f"{path}: unknown VOC class {name!r}; valid names: {list(VOC_CLASSES)}")
        box = obj.find("bndbox")
        if box is None:
            raise ValueError(f"{path}: object {name!r} has no <bndbox>")
        x1, y1, x2, y2 = (float(box.findtext(key, "nan")) for key in ("xmin", "ymin", "xmax", "ymax"))
        boxes.append([x1 - 1.0, y1 - 1.0, x2, y2])
        labels.append(VOC_CLASSES.index(name) + 1)
        difficult.append((obj.findtext("difficult") or "0").strip() == "1")
    return (
        width or None,
        height or None,
        np.array(boxes, dtype=np.float32).reshape(-1, 4),
        np.array(labels, dtype=np.int64),
        np.array(difficult, dtype=bool),
    )


class VocDetection(AnnotatedImages):
    """One (possibly "+"-joined) split of a VOC dataset; `transform` is a DetectionTransform.

    `dropped_boxes` counts boxes under 1 px wide or high after clipping (one warning with the count).
    `coco_gt` is built in memory on first use, with difficult objects as `iscrowd: 1`. A missing, empty or
    malformed XML, or an unknown class name, is an error naming the XML. A missing or unreadable image, or one whose
    size differs from its XML's, is a bad sample when read: an error, or with `skip_bad_samples` skipped and
    counted in `skipped_images` (unless its XML lacks <size>: then its size is read at construction, and an
    unreadable image is an UnreadableImageError there).
    """

    def __init__(self, root: str | Path, split: str, transform: Any, skip_bad_samples: bool = False) -> None:
        self.root = Path(root)
        self.split = split
        self.dropped_boxes = 0
        self._coco_gt: COCO | None = None
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
        super().__init__(records, transform, voc_label_to_category_id(), VOC_CLASS_NAMES, skip_bad_samples)
        if self.dropped_boxes:
            logger.warning("VOC %s %s: dropped %d boxes under 1 px wide or high", root, split, self.dropped_boxes)

    def _record(self, year_folder: Path, stem: str, image_id: int) -> DetectionRecord:
        xml = year_folder / "Annotations" / f"{stem}.xml"
        if not xml.is_file():
            raise FileNotFoundError(f"VOC annotation {xml} not found (listed in the split file)")
        width, height, boxes, labels, difficult = parse_voc_xml(xml)
        path = year_folder / "JPEGImages" / f"{stem}.jpg"
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
            categories = [{"id": i + 1, "name": name, "supercategory": "voc"} for i, name in enumerate(VOC_CLASSES)]
            coco = COCO()
            coco.dataset = {"images": images, "annotations": annotations, "categories": categories}
            with contextlib.redirect_stdout(io.StringIO()):
                coco.createIndex()
            self._coco_gt = coco
        return self._coco_gt


# -- the "voc" format of the data module -----------------------------------------------------------------------------
def voc_label_to_category_id(data: Any = None) -> dict[int, int]:
    """VOC's category ids are its labels 1..20."""
    return {label: label for label in range(1, len(VOC_CLASS_NAMES))}


def build_voc(data: Any, split: str, transform: Any, train: bool) -> VocDetection:
    return VocDetection(data.data_root, split, transform, skip_bad_samples=data.skip_bad_samples)


VOC_FORMAT = FORMATS.register(
    DetectionFormat(
        name="voc",
        build=build_voc,
        class_names=fixed_class_names(VOC_CLASS_NAMES),
        label_to_category_id=voc_label_to_category_id,
    )
)
