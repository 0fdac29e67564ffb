"""What the predictors accept as images: file paths, folders, PIL images, H x W x 3 uint8 arrays and (3, H, W)
tensors (uint8, or float in 0..1), one or many, each turned into the uint8 RGB array the data transforms read."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from deploy.run.images import IMAGE_EXTENSIONS
from deploy.run.images import rgb_array as in_memory_rgb_array
from deploy.run.video import VIDEO_EXTENSIONS
from tasks.common.images import list_image_files, load_rgb

ImageInput = str | Path | Image.Image | np.ndarray | Tensor


def rgb_array(image: ImageInput, name: str = "image") -> np.ndarray:
    """Any accepted input as a uint8 RGB array [H, W, 3]: what the data modules' transforms read.

    A path is decoded as the data modules decode it (`load_rgb`: EXIF orientation applied); a float tensor in 0..1
    becomes round(255 x value), the uint8 image it was made from; a PIL image (converted to RGB) and an array (checked:
    a ValueError unless uint8 H x W x 3) are taken as the runner of exported models takes them
    (`deploy.run.images.rgb_array`).
    """
    if isinstance(image, str | Path):
        return load_rgb(image)
    if isinstance(image, Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"{name}: a tensor must be (3, H, W) RGB; got shape {tuple(image.shape)}")
        if image.is_floating_point():
            low, high = float(image.min()), float(image.max())
            if low < 0.0 or high > 1.0:
                raise ValueError(f"{name}: a float tensor must hold values in 0..1; got {low:.3g}..{high:.3g}")
            image = (image.detach() * 255.0).round().to(torch.uint8)
        elif image.dtype != torch.uint8:
            raise ValueError(f"{name}: a tensor must be uint8 or float in 0..1; got {image.dtype}")
        return np.ascontiguousarray(image.detach().cpu().permute(1, 2, 0).numpy())
    if isinstance(image, Image.Image | np.ndarray):
        return in_memory_rgb_array(image, name)
    raise TypeError(
        f"{name}: {type(image).__name__} is not an image; pass a file path, a folder, a PIL image, an H x W x 3 "
        "uint8 array or a (3, H, W) tensor"
    )


def expand_inputs(images: ImageInput | Iterable[ImageInput]) -> list[ImageInput]:
    """One input or many -> a flat list: a folder becomes its images (sorted by name), a batched (N, 3, H, W) tensor
    or (N, H, W, 3) array its N images."""
    if isinstance(images, str | Path | Image.Image) or (isinstance(images, Tensor | np.ndarray) and images.ndim == 3):
        images = [images]
    elif isinstance(images, Tensor | np.ndarray) and images.ndim == 4:
        images = list(images)
    expanded: list[ImageInput] = []
    for item in images:
        if isinstance(item, str | Path):
            path = Path(item)
            if path.is_dir():
                found = list_image_files(path)
                if not found:
                    raise FileNotFoundError(f"folder {path}: no images ({', '.join(IMAGE_EXTENSIONS)}) directly in it")
                expanded += found
                continue
            if path.suffix.lower() in VIDEO_EXTENSIONS:
                raise ValueError(f"{path} is a video: use predict_video({str(path)!r}, output)")
            if not path.is_file():
                raise FileNotFoundError(f"image {path}: no such file or folder")
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                raise ValueError(f"{path}: not an image file ({', '.join(IMAGE_EXTENSIONS)})")
        expanded.append(item)
    return expanded
