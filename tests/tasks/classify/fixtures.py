"""Tiny ImageNet-layout classification folders written into a folder, for data tests and CLI smoke tests.

Every image is one solid colour that names its class (`class_colour`), saved as lossless PNG, so a test can read
an item's class back from its pixels and check that the label beside it is that class's: a shifted label
mapping cannot pass.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def class_colour(name: str) -> tuple[int, int, int]:
    """A colour derived from the class name alone (the same in every split and every test)."""
    code = zlib.crc32(name.encode())
    return code & 0xFF, (code >> 8) & 0xFF, (code >> 16) & 0xFF


def write_image(path: Path, colour: Sequence[int], size: int = 32, width: int | None = None) -> Path:
    """A solid-colour RGB image of size x width (width defaults to size) at `path` (format from the extension)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, width or size, 3), colour, dtype=np.uint8)).save(path)
    return path


def write_corrupt_image(path: Path) -> Path:
    """A file with an image extension that no decoder can read (a truncated PNG header)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n not really an image")
    return path


def write_image_folder(
    root: str | Path, layout: Mapping[str, Mapping[str, int]], size: int = 32, nested: bool = False
) -> Path:
    """Write root/<split>/<class>/<class>_<i>.png for layout {split: {class: count}}; return root.

    A count of 0 creates an empty class folder. `nested`: odd-numbered images go into <class>/extra/deeper/.
    """
    root = Path(root)
    for split, classes in layout.items():
        for name, count in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                where = folder / "extra" / "deeper" if nested and index % 2 else folder
                write_image(where / f"{name}_{index}.png", class_colour(name), size)
    return root


def write_flat_split(
    root: str | Path, split: str, items: Sequence[tuple[str, str]], header: bool = True, size: int = 32
) -> Path:
    """Images root/<split>/<filename> coloured by their class, and the labels file root/<split>_labels.csv.

    The labels file has a header line (if `header`), a blank line and one `filename,class` line per item.
    Returns the labels file's path.
    """
    root = Path(root)
    for filename, name in items:
        write_image(root / split / filename, class_colour(name), size)
    lines = (["filename,class"] if header else []) + [""] + [f"{filename},{name}" for filename, name in items]
    labels = root / f"{split}_labels.csv"
    labels.write_text("\n".join(lines) + "\n")
    return labels


def image_class(image: torch.Tensor, class_names: Sequence[str]) -> str:
    """The class whose colour is nearest to the mean colour of a normalised image [3, H, W]."""
    mean, std = torch.tensor(MEAN)[:, None, None], torch.tensor(STD)[:, None, None]
    rgb = ((image * std + mean) * 255).mean(dim=(1, 2)).numpy()
    distances = [np.linalg.norm(rgb - np.array(class_colour(name))) for name in class_names]
    return class_names[int(np.argmin(distances))]
