"""Where a COCO-format dataset's annotation files and images are: named by arguments, or discovered under `root`.

Named: `train_annotations` / `val_annotations` / `test_annotations`, each with its `*_images` folder (default: the
annotation file's folder), as torchvision's `CocoDetection(root, annFile)` or detectron2's
`register_coco_instances(name, {}, json_file, image_root)`. Discovered under `root`, the first that has a
validation file of:

- `annotations/instances_<split>.json`, images in `<split>/`, `images/<split>/` or `images/` (or `file_name`s that
  hold their sub-path below root): this suite's own layout (train, val), COCO 2017 (train2017, val2017) and CVAT's
  subsets (instances_Train.json with images/Train/);
- Roboflow: `<split>/_annotations.coco.json` beside its images (train/, valid/, test/).

Each split is looked for under the data module's split name, then the usual names (SPLIT_NAMES), ignoring case.
Failing both, a single annotation file of these kinds (CVAT's `annotations/instances_default.json` with `images/`)
holds every image. Where there is no validation file (one file, or `train_annotations` alone), validation is a
seeded `val_fraction` of the training file's images and training the rest (`validation_mask`). Nothing found is one
DatasetNotFoundError that lists the JSON files under root and the arguments to pass.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pytorch_lightning.utilities import rank_zero_info

from tasks.common.formats import DatasetNotFoundError
from tasks.common.splits import DEFAULT_VAL_FRACTION, split_role, validation_mask

SPLIT_NAMES: dict[str, tuple[str, ...]] = {
    "train": ("train", "train2017"),
    "val": ("val", "val2017", "valid", "validation"),
    "test": ("test", "test2017"),
}
ROBOFLOW_FILE = "_annotations.coco.json"
# (layout name, glob under root, the split name a matching file holds)
PATTERNS = (
    ("annotations/instances_<split>.json", "annotations/instances_*.json", lambda p: p.stem[len("instances_") :]),
    (f"Roboflow <split>/{ROBOFLOW_FILE}", f"*/{ROBOFLOW_FILE}", lambda p: p.parent.name),
)
# the data module arguments that name the files (the "coco" format's options)
FILE_ARGUMENTS = tuple(f"{role}_{kind}" for role in SPLIT_NAMES for kind in ("annotations", "images"))
SHOWN_JSON_FILES = 10  # the no-match message lists at most this many
Part = Literal["all", "train", "val"]


@dataclass(frozen=True)
class CocoSource:
    """One split: its annotation file, the folders its images may be in (tried in order), `base` (a folder the
    file names may hold their sub-path below), and which of the file's images it is: all, or the train or val part
    of a held-out split (`validation_mask` over the images sorted by id)."""

    annotation_file: Path
    image_folders: tuple[Path, ...]
    base: Path | None = None
    part: Part = "all"
    val_fraction: float = DEFAULT_VAL_FRACTION

    @classmethod
    def of_split(cls, root: str | Path, split: str) -> CocoSource:
        """The named split of the fixed layout: `root/annotations/instances_<split>.json`, images in `root/<split>/`
        or `root/images/<split>/`; FileNotFoundError naming the file when it is missing."""
        root = Path(root)
        path = root / "annotations" / f"instances_{split}.json"
        if not path.is_file():
            raise FileNotFoundError(f"COCO annotation file {path} not found (format='coco', split={split!r})")
        return cls(path, (root / split, root / "images" / split), base=root)

    def image_folder(self, first_file_name: str | None) -> Path:
        """The first folder (or `base`) that holds the first image, else the first folder that exists;
        FileNotFoundError naming the folders tried."""
        if first_file_name is not None:
            for folder in (*self.image_folders, *([self.base] if self.base is not None else [])):
                if (folder / first_file_name).is_file():
                    return folder
        for folder in self.image_folders:
            if folder.is_dir():
                return folder
        also = f" (and {self.base / first_file_name})" if first_file_name and self.base is not None else ""
        raise FileNotFoundError(
            f"image folder of {self.annotation_file} not found: tried "
            f"{' and '.join(str(f) for f in self.image_folders)}{also}"
        )

    def used(self, count: int) -> np.ndarray | None:
        """bool [count] over the file's images sorted by id: those this split uses; None for all of them."""
        if self.part == "all":
            return None
        val = validation_mask(count, self.val_fraction, str(self.annotation_file))
        return val if self.part == "val" else ~val


@dataclass(frozen=True)
class CocoLayout:
    """A dataset's splits by role ("train", "val", "test"), `name`d after the layout; `missing` says, for a role
    without a file, what was looked for."""

    name: str
    sources: dict[str, CocoSource]
    root: Path | None = None
    missing: dict[str, str] = field(default_factory=dict)

    def source(self, role: str) -> CocoSource:
        """The split of `role`; DatasetNotFoundError saying what was looked for when there is none."""
        if role not in self.sources:
            where = f" under {self.root}" if self.root is not None else ""
            looked = f": looked for {self.missing[role]}" if role in self.missing else ""
            raise DatasetNotFoundError(
                f"no {role} annotations{where} ({self.name}){looked}; or give the annotation files instead of "
                "root: train_annotations, val_annotations, test_annotations (and their *_images)"
            )
        return self.sources[role]

    def describe(self) -> str:
        """One line: the layout and the annotation file of each split."""

        def shown(path: Path) -> str:
            inside = self.root is not None and path.is_relative_to(self.root)
            return str(path.relative_to(self.root)) if inside else str(path)

        parts = [
            f"{role} {shown(s.annotation_file)}" + (f" ({s.part} part)" if s.part != "all" else "")
            for role, s in self.sources.items()
        ]
        return f"COCO data{f' under {self.root}' if self.root else ''} ({self.name}): {', '.join(parts)}"


def _names(role: str, split: str | None) -> list[str]:
    """The names a role's file is looked for under: the data module's split name, then the usual ones."""
    return list(dict.fromkeys([*([split] if split else []), *SPLIT_NAMES[role]]))


def _image_folders(root: Path, annotation_file: Path) -> tuple[tuple[Path, ...], Path | None]:
    if annotation_file.name == ROBOFLOW_FILE:
        return (annotation_file.parent,), None
    split = annotation_file.stem[len("instances_") :]
    return (root / split, root / "images" / split, root / "images"), root


def _held_out(source: CocoSource, val_fraction: float) -> dict[str, CocoSource]:
    """The train and val parts of one file's images, as the sources of those roles."""
    return {part: dataclasses.replace(source, part=part, val_fraction=val_fraction) for part in ("train", "val")}


def discover_coco_layout(
    root: str | Path, splits: Mapping[str, str | None], val_fraction: float = DEFAULT_VAL_FRACTION
) -> CocoLayout:
    """The layout under `root` (see the module docstring); `splits` holds the data module's split name of each role
    ("test" None: no test split). DatasetNotFoundError when root is missing or nothing matches."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError(f"data root {root} {'is not a folder' if root.exists() else 'does not exist'}")
    wanted = {role: _names(role, splits.get(role)) for role in SPLIT_NAMES if role != "test" or splits.get("test")}
    every = []
    for name, pattern, split_of in PATTERNS:
        files = {split_of(p).lower(): p for p in sorted(root.glob(pattern))}
        every += files.values()
        found = {
            role: next((files[n.lower()] for n in names if n.lower() in files), None) for role, names in wanted.items()
        }
        if found["val"] is not None:
            sources = {role: CocoSource(f, *_image_folders(root, f)) for role, f in found.items() if f is not None}
            missing = {
                role: pattern.replace("*", "{" + ",".join(names) + "}")
                for role, names in wanted.items()
                if found[role] is None
            }
            return CocoLayout(name, sources, root, missing)
    if len(every) == 1:
        source = CocoSource(every[0], *_image_folders(root, every[0]))
        return CocoLayout("one annotation file, validation held out", _held_out(source, val_fraction), root)
    shown, total = json_files_under(root)
    listing = ", ".join(shown) + (f" and {total - len(shown)} more" if total > len(shown) else "") if shown else "none"
    expected = " and ".join(f"annotations/instances_{{{','.join(wanted[r])}}}.json" for r in ("train", "val"))
    raise DatasetNotFoundError(
        f"no COCO dataset layout found under {root}: expected {expected} (images in <split>/ or images/<split>/), "
        f"Roboflow's train/, valid/ with {ROBOFLOW_FILE} each, or one annotation file such as CVAT's "
        f"annotations/instances_default.json; .json files there: {listing}. Name the files instead: "
        "--data.train_annotations FILE --data.train_images DIR --data.val_annotations FILE --data.val_images DIR"
    )


def json_files_under(root: Path, depth: int = 3, cap: int = SHOWN_JSON_FILES) -> tuple[list[str], int]:
    """(the first `cap` .json files in `root` and its folders down to `depth` levels, relative and sorted; their
    total count). Hidden folders are skipped."""
    found: list[str] = []
    for folder, folders, files in os.walk(root):
        relative = Path(folder).relative_to(root)
        folders[:] = [] if len(relative.parts) >= depth - 1 else sorted(f for f in folders if not f.startswith("."))
        found += [str(relative / f) for f in files if f.endswith(".json")]
    return sorted(found)[:cap], len(found)


def named_coco_layout(data: Any) -> CocoLayout:
    """The layout the `*_annotations` / `*_images` arguments name; without `val_annotations`, validation is held
    out from `train_annotations`' images."""
    given = {role: getattr(data, f"{role}_annotations", None) for role in SPLIT_NAMES}
    for role, file in given.items():
        if file is None and getattr(data, f"{role}_images", None) is not None:
            raise ValueError(f"{role}_images needs {role}_annotations=<COCO annotation file>")
    if data.root is not None:
        raise ValueError(
            f"root={data.root!r} and {', '.join(f'{r}_annotations' for r, a in given.items() if a)} both locate the "
            "data: give root (its layout is discovered) or the annotation files, not both"
        )
    if given["train"] is None and given["val"] is None:
        raise ValueError("test_annotations needs val_annotations or train_annotations as well (the class list)")
    sources = {}
    for role, file in given.items():
        if file is None:
            continue
        path = Path(file)
        if not path.is_file():
            raise DatasetNotFoundError(f"{role}_annotations={file!r}: no such file")
        images = getattr(data, f"{role}_images", None)
        sources[role] = CocoSource(path, (Path(images) if images is not None else path.parent,))
    if "val" not in sources:
        held_out = _held_out(sources.pop("train"), getattr(data, "val_fraction", DEFAULT_VAL_FRACTION))
        return CocoLayout("train_annotations, validation held out", {**sources, **held_out})
    return CocoLayout("the annotation files given", sources)


def coco_layout(data: Any) -> CocoLayout:
    """The data module's layout: named by its arguments, else discovered under its `data_root`; found once (kept
    in `data.format_cache`) and logged in one line."""
    layout = data.format_cache.get("coco_layout")
    if layout is None:
        if any(getattr(data, argument, None) is not None for argument in FILE_ARGUMENTS):
            layout = named_coco_layout(data)
        else:
            splits = {"train": data.train_split, "val": data.val_split, "test": data.test_split}
            layout = discover_coco_layout(data.data_root, splits, getattr(data, "val_fraction", DEFAULT_VAL_FRACTION))
        rank_zero_info(layout.describe())
        data.format_cache["coco_layout"] = layout
    return layout


def coco_source(data: Any, split: str, train: bool) -> CocoSource:
    """The source of the split a format's `build(data, split, transform, train)` is asked for (`split_role`)."""
    return coco_layout(data).source(split_role(data, split, train))
