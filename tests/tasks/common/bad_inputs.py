"""Bad and unusual inputs for every data reader, for tests/tasks/data/test_bad_input_battery.py.

Two kinds of writer:
- image writers: a broken file (zero bytes, truncated JPEG) or a valid but unusual one (16-bit PNG, CMYK JPEG,
  grayscale, RGBA, EXIF-rotated), each returning the 8-bit RGB pixels the reader must decode it to;
- `BadInputFixture`: one small dataset of a format (three items, 32x24 images, built on the writers of
  fixtures.py, segmentation_fixtures.py and classification_fixtures.py) with the files of its middle item, the
  "victim", at hand: replace its image, rewrite its annotation, break its annotation file.

The victim is item 1 of 3, so a skip is visible (item 1 becomes item 2) and every neighbour can be compared.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image

from tasks.classify.data.formats.imagefolder import ImageFolderClassification
from tasks.classify.data.transforms import ClassificationEvalTransform
from tasks.common.categories import VOC_CLASSES
from tasks.detect.data.formats.coco import CocoDetection
from tasks.detect.data.formats.voc import VocDetection
from tasks.detect.data.transforms import DetectionTransform
from tasks.segment.data.formats.coco import CocoSegmentation
from tasks.segment.data.formats.voc import VocSegmentation
from tasks.segment.data.masks import COCO_VOC_CATEGORY_IDS, save_palette_mask
from tasks.segment.data.transforms import SegmentationEvalTransform
from tests.tasks.classify.fixtures import write_flat_split, write_image_folder
from tests.tasks.detect.fixtures import _voc_xml, edit_coco_annotations, write_coco_dataset, write_voc_dataset
from tests.tasks.segment.fixtures import write_coco_segmentation, write_voc_segmentation

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
WIDTH, HEIGHT = 32, 24  # every fixture image (image_size=32 gives 32x24 in the detection/segmentation writers)
VICTIM = 1
CLASSES = ("ant", "bee", "cat")  # imagefolder: one image per class, so item i has label i

DETECTION_FORMATS = ("coco", "voc")
SEGMENTATION_FORMATS = ("voc_seg", "coco_seg")
FORMATS = (*DETECTION_FORMATS, *SEGMENTATION_FORMATS, "imagefolder")

Box = tuple[float, float, float, float]  # x1, y1, x2, y2 in continuous pixels (x2, y2 exclusive)


# -- image writers ----------------------------------------------------------------------------------------------
def write_zero_byte(path: Path) -> None:
    path.write_bytes(b"")


def write_truncated_jpeg(path: Path) -> None:
    """The first half of a valid noisy JPEG: the header decodes, the scan data ends early."""
    noise = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, format="JPEG", quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def write_png16_gray(path: Path) -> np.ndarray:
    """A 16-bit grayscale PNG: 0..60000 left to right, +200 per row (up to 64600); decodes to v >> 8."""
    values = np.linspace(0, 60000, WIDTH)[None, :] + 200 * np.arange(HEIGHT)[:, None]
    values = values.astype(np.uint16)
    Image.fromarray(values).save(path, format="PNG")
    assert Image.open(path).mode == "I;16"
    return np.repeat((values >> 8).astype(np.uint8)[..., None], 3, axis=2)


def write_png16_rgb(path: Path) -> np.ndarray:
    """A 48-bit RGB PNG (written by OpenCV; PIL cannot): R ramps along x, G along y, B constant; decodes to v >> 8."""
    rgb = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint16)
    rgb[..., 0] = np.linspace(0, 65535, WIDTH).astype(np.uint16)[None, :]
    rgb[..., 1] = np.linspace(65535, 0, HEIGHT).astype(np.uint16)[:, None]
    rgb[..., 2] = 40000
    ok, encoded = cv2.imencode(".png", rgb[..., ::-1])  # OpenCV writes BGR
    assert ok
    path.write_bytes(encoded.tobytes())
    return (rgb >> 8).astype(np.uint8)


def write_cmyk_jpeg(path: Path) -> np.ndarray:
    """A CMYK JPEG of C=0, M=128, Y=255, K=0: orange, RGB (255, 127, 0)."""
    Image.new("CMYK", (WIDTH, HEIGHT), (0, 128, 255, 0)).save(path, format="JPEG", quality=95)
    return np.broadcast_to(np.array([255, 127, 0], dtype=np.uint8), (HEIGHT, WIDTH, 3)).copy()


def write_grayscale_jpeg(path: Path) -> np.ndarray:
    """A one-channel (mode "L") JPEG ramping 40..220 left to right; decodes to three equal channels."""
    ramp = np.tile(np.linspace(40, 220, WIDTH), (HEIGHT, 1)).astype(np.uint8)
    Image.fromarray(ramp, mode="L").save(path, format="JPEG", quality=95)
    return np.repeat(ramp[..., None], 3, axis=2)


def write_rgba_png(path: Path) -> np.ndarray:
    """An RGBA PNG with alpha from 0 (left) to 255 (right) over known colours; the alpha channel is dropped."""
    rgba = np.zeros((HEIGHT, WIDTH, 4), dtype=np.uint8)
    rgba[..., 0] = np.linspace(0, 255, WIDTH).astype(np.uint8)[None, :]
    rgba[..., 1] = 90
    rgba[..., 2] = np.linspace(255, 0, HEIGHT).astype(np.uint8)[:, None]
    rgba[..., 3] = np.linspace(0, 255, WIDTH).astype(np.uint8)[None, :]
    Image.fromarray(rgba, mode="RGBA").save(path, format="PNG")
    return rgba[..., :3].copy()


@dataclass(frozen=True)
class UnusualImage:
    """A valid image the readers must decode to 8-bit RGB: its writer, file suffix and pixel tolerance (JPEG)."""

    name: str
    write: Callable[[Path], np.ndarray]
    suffix: str
    atol: int


UNUSUAL_IMAGES: dict[str, UnusualImage] = {
    image.name: image
    for image in (
        UnusualImage("png16_gray", write_png16_gray, ".png", 0),
        UnusualImage("png16_rgb", write_png16_rgb, ".png", 0),
        UnusualImage("cmyk_jpeg", write_cmyk_jpeg, ".jpg", 3),
        UnusualImage("grayscale", write_grayscale_jpeg, ".jpg", 3),
        UnusualImage("rgba", write_rgba_png, ".png", 0),
    )
}

# EXIF orientation 6: "rotate 90 degrees clockwise to display". Stored 40x24 (WxH), displayed 24x40.
EXIF_ORIENTATION = 6
DISPLAYED_WIDTH, DISPLAYED_HEIGHT = 24, 40
EXIF_SQUARE: Box = (4.0, 22.0, 16.0, 34.0)  # in the displayed frame: lower left, where a transpose cannot land
EXIF_COLOUR = (220, 30, 40)
EXIF_BACKGROUND = (90, 160, 90)


def write_exif_rotated(path: Path) -> np.ndarray:
    """A JPEG whose stored pixels are the displayed image rotated back (90 degrees counter-clockwise), tagged with
    EXIF orientation 6; returns the displayed image [40, 24, 3], the frame an annotation tool shows."""
    displayed = np.empty((DISPLAYED_HEIGHT, DISPLAYED_WIDTH, 3), dtype=np.uint8)
    displayed[...] = EXIF_BACKGROUND
    x1, y1, x2, y2 = (int(v) for v in EXIF_SQUARE)
    displayed[y1:y2, x1:x2] = EXIF_COLOUR
    stored = Image.fromarray(displayed).transpose(Image.Transpose.ROTATE_90)
    assert stored.size == (DISPLAYED_HEIGHT, DISPLAYED_WIDTH)
    exif = Image.Exif()
    exif[0x0112] = EXIF_ORIENTATION
    stored.save(path, format="JPEG", quality=95, subsampling=0, exif=exif)  # 4:4:4: no chroma bleed
    return displayed


# -- transforms that keep the decoded pixels -------------------------------------------------------------------
def raw_detection(
    image: np.ndarray, boxes: np.ndarray, labels: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A DetectionTransform stand-in returning the decoded uint8 image [H, W, 3] and the boxes as given."""
    return torch.from_numpy(image), torch.from_numpy(boxes), torch.from_numpy(labels), torch.ones(2)


def raw_segmentation(image: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(image), torch.from_numpy(mask)


def raw_classification(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image)


RAW_TRANSFORMS: dict[str, Callable[..., Any]] = {
    "coco": raw_detection,
    "voc": raw_detection,
    "voc_seg": raw_segmentation,
    "coco_seg": raw_segmentation,
    "imagefolder": raw_classification,
}


def default_transform(format: str) -> Any:
    """The reader's evaluation transform: detection 32x32 resize, segmentation normalise only, classification
    resize and centre crop to 16x16."""
    if format in DETECTION_FORMATS:
        return DetectionTransform(32, MEAN, STD, "none")
    if format in SEGMENTATION_FORMATS:
        return SegmentationEvalTransform(MEAN, STD)
    return ClassificationEvalTransform(16, 1.0, MEAN, STD)


# -- one small dataset per format -------------------------------------------------------------------------------
@dataclass
class BadInputFixture:
    """A three-item dataset of `format` under `root`, with the victim's (item 1's) files at hand."""

    format: str
    root: Path

    # -- where things are ---------------------------------------------------------------------------------------
    @property
    def split(self) -> str:
        return {"coco": "val", "voc": "trainval", "voc_seg": "trainval", "coco_seg": "val"}.get(self.format, "train")

    @property
    def voc_year(self) -> Path:
        return self.root / ("VOC2007" if self.format == "voc" else "VOC2012")

    @property
    def annotation_file(self) -> Path:
        """The file holding the victim's annotation: COCO json, VOC XML, VOC mask PNG (imagefolder: none)."""
        if self.format in ("coco", "coco_seg"):
            return self.root / "annotations" / f"instances_{self.split}.json"
        if self.format == "voc":
            return self.voc_year / "Annotations" / f"{self.victim_stem}.xml"
        if self.format == "voc_seg":
            return self.voc_year / "SegmentationClass" / f"{self.victim_stem}.png"
        raise ValueError(f"{self.format} has no annotation file per image")

    @property
    def victim_stem(self) -> str:
        return {"voc": "2007_000001", "voc_seg": "2012_000001"}[self.format]

    def image_path(self, index: int = VICTIM) -> Path:
        """The image file of item `index`."""
        if self.format in ("coco", "coco_seg"):
            info = sorted(self.coco_document()["images"], key=lambda i: i["id"])[index]
            return self.root / self.split / info["file_name"]
        if self.format in ("voc", "voc_seg"):
            stems = (self.voc_year / "ImageSets" / ("Main" if self.format == "voc" else "Segmentation")).joinpath(
                f"{self.split}.txt"
            )
            return self.voc_year / "JPEGImages" / f"{stems.read_text().split()[index]}.jpg"
        folder = self.root / self.split / CLASSES[index]
        return next(p for p in sorted(folder.iterdir()) if p.is_file())

    # -- building -----------------------------------------------------------------------------------------------
    def build(self, transform: Any = None, **options: Any) -> Any:
        """The reader over this fixture (`transform` None: the evaluation transform); options go to the reader."""
        transform = default_transform(self.format) if transform is None else transform
        if self.format == "coco":
            return CocoDetection(self.root, self.split, transform, **options)
        if self.format == "voc":
            return VocDetection(self.voc_year, self.split, transform, **options)
        if self.format == "voc_seg":
            return VocSegmentation(self.root, self.split, transform, **options)
        if self.format == "coco_seg":
            return CocoSegmentation(self.root, self.split, transform, **options)
        return ImageFolderClassification(self.root, self.split, transform, **options)

    # -- changing the victim ------------------------------------------------------------------------------------
    def coco_document(self) -> dict[str, Any]:
        return json.loads(self.annotation_file.read_text())

    def replace_image(self, write: Callable[[Path], Any], suffix: str = ".jpg") -> tuple[Path, Any]:
        """Write the victim's image with `write(path)`; return (path, what `write` returned).

        COCO and imagefolder files take `suffix` (the COCO `file_name` follows); VOC layouts always read
        <stem>.jpg, so other content is written under that name (the decoders go by content, not by name).
        """
        old = self.image_path()
        path = old if self.format in ("voc", "voc_seg") else old.with_suffix(suffix)
        if path != old:
            old.unlink()
        if self.format in ("coco", "coco_seg"):

            def rename(document: dict[str, Any]) -> None:
                info = sorted(document["images"], key=lambda i: i["id"])[VICTIM]
                info["file_name"] = path.name

            edit_coco_annotations(self.root, self.split, rename)
        return path, write(path)

    def victim_image_id(self) -> int:
        return sorted(self.coco_document()["images"], key=lambda i: i["id"])[VICTIM]["id"]

    def annotate_victim(self, width: int | None, height: int | None, boxes: Sequence[Box], label: int = 2) -> None:
        """Replace the victim's annotation: size width x height (None: no size, VOC XML only) and `boxes` of VOC
        label `label` (COCO detection: the file's category of that label). Segmentation: the boxes are filled
        rectangles of `label` (VOC mask PNG of that size, or COCO polygons)."""
        if self.format == "voc":
            objects = [(VOC_CLASSES[label - 1], box, False) for box in boxes]
            text = _voc_xml(self.victim_stem, width or 0, height or 0, objects)
            if width is None or height is None:
                root = ET.fromstring(text)
                root.remove(root.find("size"))  # type: ignore[arg-type]
                text = ET.tostring(root, encoding="unicode")
            self.annotation_file.write_text(text)
        elif self.format == "voc_seg":
            assert width is not None and height is not None
            mask = np.zeros((height, width), dtype=np.uint8)
            for x1, y1, x2, y2 in boxes:
                mask[int(y1) : int(y2), int(x1) : int(x2)] = label
            save_palette_mask(self.annotation_file, mask)
        elif self.format in ("coco", "coco_seg"):
            image_id = self.victim_image_id()
            category = self._coco_category(label)

            def edit(document: dict[str, Any]) -> None:
                info = next(i for i in document["images"] if i["id"] == image_id)
                for key, value in (("width", width), ("height", height)):
                    if value is None:
                        info.pop(key, None)
                    else:
                        info[key] = value
                document["annotations"] = [a for a in document["annotations"] if a["image_id"] != image_id]
                next_id = max((a["id"] for a in document["annotations"]), default=0) + 1
                for offset, (x1, y1, x2, y2) in enumerate(boxes):
                    document["annotations"].append(
                        {
                            "id": next_id + offset,
                            "image_id": image_id,
                            "category_id": category,
                            "bbox": [x1, y1, x2 - x1, y2 - y1],
                            "segmentation": [[x1, y1, x2, y1, x2, y2, x1, y2]],
                            "area": float((x2 - x1) * (y2 - y1)),
                            "iscrowd": 0,
                        }
                    )

            edit_coco_annotations(self.root, self.split, edit)
        else:
            raise ValueError(f"{self.format} has no per-image annotation")

    def add_boxes(self, boxes: Sequence[Box], label: int = 2) -> None:
        """Add `boxes` to the victim's existing detection annotation (COCO or VOC, size unchanged)."""
        if self.format == "coco":
            image_id, category = self.victim_image_id(), self._coco_category(label)

            def edit(document: dict[str, Any]) -> None:
                next_id = max(a["id"] for a in document["annotations"]) + 1
                for offset, (x1, y1, x2, y2) in enumerate(boxes):
                    document["annotations"].append(
                        {
                            "id": next_id + offset,
                            "image_id": image_id,
                            "category_id": category,
                            "bbox": [x1, y1, x2 - x1, y2 - y1],
                            "area": float(abs((x2 - x1) * (y2 - y1))),
                            "iscrowd": 0,
                        }
                    )

            edit_coco_annotations(self.root, self.split, edit)
        elif self.format == "voc":
            root = ET.parse(self.annotation_file).getroot()
            for x1, y1, x2, y2 in boxes:
                # VOC's 1-based inclusive indices: continuous x1..x2 is written x1 + 1 .. x2.
                obj = ET.SubElement(root, "object")
                ET.SubElement(obj, "name").text = VOC_CLASSES[label - 1]
                ET.SubElement(obj, "difficult").text = "0"
                box = ET.SubElement(obj, "bndbox")
                for key, value in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
                    ET.SubElement(box, key).text = str(int(value))
            self.annotation_file.write_text(ET.tostring(root, encoding="unicode"))
        else:
            raise ValueError(f"{self.format} has no boxes")

    def _coco_category(self, label: int) -> int:
        """The COCO category id of a label: the file's label-th category (detection) or VOC's (segmentation)."""
        if self.format == "coco_seg":
            return COCO_VOC_CATEGORY_IDS[label]
        return sorted(c["id"] for c in self.coco_document()["categories"])[label - 1]


def write_fixture(format: str, root: Path) -> BadInputFixture:
    """Write the three-item dataset of `format` under `root` (a fresh folder)."""
    if format == "coco":
        write_coco_dataset(root, num_images=3, image_size=WIDTH, splits=("val",))
    elif format == "voc":
        write_voc_dataset(root, num_images=3, image_size=WIDTH, years=("VOC2007",))
    elif format == "voc_seg":
        write_voc_segmentation(root, num_images=3, image_size=WIDTH)
    elif format == "coco_seg":
        write_coco_segmentation(root, num_images=3, image_size=WIDTH)
    elif format == "imagefolder":
        write_image_folder(root, {"train": dict.fromkeys(CLASSES, 1)}, size=16)
    else:
        raise ValueError(f"unknown format {format!r}; valid: {list(FORMATS)}")
    return BadInputFixture(format, root)


def write_flat_imagefolder(root: Path, extra_lines: Sequence[str] = ()) -> Path:
    """A train split with the CLASSES folders and a flat "val" split of one image per class plus its labels file
    (`extra_lines` appended); returns the labels file."""
    write_image_folder(root, {"train": dict.fromkeys(CLASSES, 1)}, size=16)
    labels = write_flat_split(root, "val", [(f"v{index}.png", name) for index, name in enumerate(CLASSES)], size=16)
    if extra_lines:
        labels.write_text(labels.read_text() + "".join(f"{line}\n" for line in extra_lines))
    return labels
