"""Images in: file paths, folders (their images in name order), PIL images and H x W x 3 uint8 RGB arrays, each as
the uint8 RGB array the predictors see.

Decoding (`decode_rgb`) and the image extensions live here, torch-free, and the tasks' data modules and predictors
use them (`tasks.common.images`): EXIF orientation applied, 16-bit values shifted down by 8 bits, 32-bit and float
images scaled by their maximum, palette transparency and alpha dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from deploy.run.errors import InputError
from deploy.run.video import VIDEO_EXTENSIONS

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L")  # PIL modes of 16-bit grayscale (PNG, TIFF)
# what decoding a missing, truncated or non-image file raises
DECODE_ERRORS: tuple[type[Exception], ...] = (OSError, UnidentifiedImageError, ValueError, SyntaxError)

ImageInput = str | Path | Image.Image | np.ndarray


def decode_rgb(path: str | Path) -> np.ndarray:
    """Decode `path` to uint8 RGB [H, W, 3], EXIF orientation applied (the frame annotation tools show).

    Grayscale, palette, RGBA (alpha dropped), CMYK and 16-bit images all come back as 8-bit RGB. 16-bit values v
    become v >> 8, for grayscale as Pillow itself does for 16-bit RGB, so one 16-bit value maps to one 8-bit
    value in every image; 32-bit integer and float images (range unknown) are scaled by their own maximum.
    A file that is missing or does not decode raises one of DECODE_ERRORS; callers turn it into their own error.
    """
    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened)
        if image.mode in SIXTEEN_BIT_MODES:
            # PIL's convert("RGB") saturates 16-bit values instead of scaling them.
            image = Image.fromarray((np.asarray(image, dtype=np.uint16) >> 8).astype(np.uint8))
        elif image.mode in ("I", "F"):
            values = np.asarray(image, dtype=np.float32)
            peak = max(float(values.max()), 1.0)
            image = Image.fromarray(np.clip(values * (255.0 / peak), 0, 255).astype(np.uint8))
        if image.mode == "P" and "transparency" in image.info:
            image = image.convert("RGBA")
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def load_rgb(path: str | Path) -> np.ndarray:
    """`path` decoded (`decode_rgb`); an InputError naming it where it fails."""
    try:
        return decode_rgb(path)
    except DECODE_ERRORS as error:
        raise InputError(
            f"image {path} cannot be decoded ({error}): replace it with a readable image or leave it out"
        ) from error


def image_files(folder: Path) -> list[Path]:
    """The files directly in `folder` with an image extension (IMAGE_EXTENSIONS, any case), by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def list_images(folder: Path) -> list[Path]:
    """The image files directly in `folder`, by name; an InputError where there are none."""
    found = image_files(folder)
    if not found:
        raise InputError(f"folder {folder} has no images ({', '.join(IMAGE_EXTENSIONS)}) directly in it")
    return found


def expand_inputs(images: ImageInput | Iterable[ImageInput]) -> list[ImageInput]:
    """One input or many -> a flat list: a folder becomes its images, an (N, H, W, 3) array its N images. Paths are
    checked here (they exist and are images), before any is decoded."""
    if isinstance(images, str | Path | Image.Image) or (isinstance(images, np.ndarray) and images.ndim == 3):
        images = [images]
    elif isinstance(images, np.ndarray) and images.ndim == 4:
        images = list(images)
    expanded: list[ImageInput] = []
    for item in images:
        if isinstance(item, str | Path):
            path = Path(item)
            if path.is_dir():
                expanded += list_images(path)
                continue
            check_image_path(path)
        expanded.append(item)
    return expanded


def check_image_path(path: Path) -> None:
    """An InputError unless `path` is an existing file with an image suffix."""
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        raise InputError(f"{path} is a video: pass it to `python -m deploy.run MODEL {path} --out DIR`")
    if not path.is_file():
        raise InputError(f"image {path}: no such file or folder; check the path")
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise InputError(f"{path} is not an image file: the runner reads {', '.join(IMAGE_EXTENSIONS)}")


def rgb_array(image: ImageInput, name: str = "image") -> np.ndarray:
    """Any accepted input as uint8 RGB [H, W, 3]: a path decoded (`load_rgb`), a PIL image converted to RGB, an array
    checked (uint8 H x W x 3); an InputError (a ValueError) naming `name` for anything else."""
    if isinstance(image, str | Path):
        return load_rgb(image)
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise InputError(
                f"{name}: a numpy array must be uint8 H x W x 3 (RGB); got shape {image.shape}, dtype {image.dtype}"
            )
        return np.ascontiguousarray(image)
    raise InputError(
        f"{name}: {type(image).__name__} is not an image; pass a file path, a folder, a PIL image or an H x W x 3 "
        "uint8 array"
    )
