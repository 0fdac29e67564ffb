"""Tiny COCO datasets in the layouts users bring (COCO 2017, CVAT, Roboflow, files anywhere) and a VOC folder
without ImageSets/: each is `write_coco_dataset` / `write_voc_dataset` output moved into place."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from tasks.common.categories import VOC_CLASSES
from tests.tasks.detect.fixtures import write_coco_dataset, write_voc_dataset

CATEGORY_IDS = (3, 7, 11)  # named "cat3", "cat7", "cat11"
IMAGE_SIZE = 64  # images are 64 x 48


def _coco(root: Path, splits: tuple[str, ...], num_images: int = 4) -> Path:
    return write_coco_dataset(root, num_images, IMAGE_SIZE, splits, CATEGORY_IDS)


def coco_2017(root: Path) -> dict[str, Path]:
    """annotations/instances_{train2017,val2017}.json with train2017/ and val2017/."""
    _coco(root, ("train2017", "val2017"))
    return {r: root / "annotations" / f"instances_{r}2017.json" for r in ("train", "val")}


def cvat_single(root: Path, num_images: int = 6) -> dict[str, Path]:
    """CVAT's COCO 1.0 export: annotations/instances_default.json with every image in images/."""
    _coco(root, ("default",), num_images)
    shutil.move(root / "default", root / "images")
    return dict.fromkeys(("train", "val"), root / "annotations" / "instances_default.json")


def cvat_subsets(root: Path) -> dict[str, Path]:
    """CVAT's subsets: annotations/instances_{Train,Validation}.json with images/Train/ and images/Validation/."""
    _coco(root, ("Train", "Validation"))
    for subset in ("Train", "Validation"):
        shutil.move(root / subset, root / "images" / subset)
    return {
        "train": root / "annotations" / "instances_Train.json",
        "val": root / "annotations" / "instances_Validation.json",
    }


def roboflow(root: Path) -> dict[str, Path]:
    """Roboflow's COCO export: train/ and valid/, each with _annotations.coco.json beside its images."""
    _coco(root, ("train", "valid"))
    for split in ("train", "valid"):
        (root / "annotations" / f"instances_{split}.json").rename(root / split / "_annotations.coco.json")
    (root / "annotations").rmdir()
    return {"train": root / "train" / "_annotations.coco.json", "val": root / "valid" / "_annotations.coco.json"}


def named_files(root: Path) -> dict[str, Path]:
    """Annotation files and image folders at unrelated paths, for `*_annotations` / `*_images`: returns role ->
    annotation file, and role + "_images" -> image folder."""
    written = _coco(root / "export", ("a", "b"))
    found: dict[str, Path] = {}
    for role, split in (("train", "a"), ("val", "b")):
        found[role] = root / "labels" / role / "coco.json"
        found[f"{role}_images"] = root / "pictures" / split
        found[role].parent.mkdir(parents=True)
        (written / "annotations" / f"instances_{split}.json").rename(found[role])
        shutil.move(written / split, found[f"{role}_images"])
    shutil.rmtree(written)
    return found


COCO_LAYOUTS: dict[str, Callable[[Path], dict[str, Path]]] = {
    "coco_2017": coco_2017,
    "cvat_single": cvat_single,
    "cvat_subsets": cvat_subsets,
    "roboflow": roboflow,
}


def named_arguments(found: dict[str, Path]) -> dict[str, str]:
    """The data module arguments that name `named_files`' files."""
    return {
        f"{role}_{kind}": str(found[role if kind == "annotations" else f"{role}_images"])
        for role in ("train", "val")
        for kind in ("annotations", "images")
    }


def voc_without_lists(root: Path, num_images: int = 6, rename: dict[str, str] | None = None) -> Path:
    """A VOC year folder without ImageSets/ (a labelImg or CVAT export); `rename` changes class names in the XMLs
    (default: VOC's first four classes become "widget", "gadget", "sprocket", "cog")."""
    folder = write_voc_dataset(root, num_images, IMAGE_SIZE) / "VOC2007"
    shutil.rmtree(folder / "ImageSets")
    names = (
        dict(zip(VOC_CLASSES[:4], ("widget", "gadget", "sprocket", "cog"), strict=True)) if rename is None else rename
    )
    for xml in (folder / "Annotations").glob("*.xml"):
        text = xml.read_text()
        for old, new in names.items():
            text = text.replace(f"<name>{old}</name>", f"<name>{new}</name>")
        xml.write_text(text)
    return folder
