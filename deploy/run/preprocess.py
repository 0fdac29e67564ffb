"""Images to network inputs, pixel for pixel as the predictors' evaluation transforms (albumentations) make them,
before their normalisation, which the exported files do inside.

- "stretch" (detection; segmentation files of one fixed size): `A.Resize(S, S)` (bilinear);
- detection "letterbox": `A.LongestMaxSize(S)` (each side max(1, round(side * S / longest)), bilinear) then
  `A.PadIfNeeded(S, S, position="top_left", BORDER_CONSTANT, fill=mean * 255)`, the fill rounded by OpenCV as
  albumentations passes it (`tasks/detect/data/transforms.py`);
- classification "shorter_side_crop": `A.SmallestMaxSize(side, interpolation)` (each side
  max(1, round(side * resize_side / shortest))) then `A.CenterCrop(R, R)` at ((H - R) // 2, (W - R) // 2)
  (`tasks/classify/data/transforms.py`);
- segmentation "none": the image as it is.

`prepare` also returns what maps outputs back to the image: its size, and for detection the scale (sx, sy) with
original = input * scale (`tasks/detect/data/transforms.py: input_scale`).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from deploy.run.contract import Contract
from deploy.run.errors import InputError


def resize(image: np.ndarray, height: int, width: int, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """`image` at height x width (itself where it already is), as albumentations' resizes call OpenCV."""
    if image.shape[:2] == (height, width):
        return image
    return cv2.resize(image, (width, height), interpolation=interpolation)


def scaled(image: np.ndarray, scale: float, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Both sides times `scale`, each max(1, round(side * scale)): `LongestMaxSize` / `SmallestMaxSize`."""
    height, width = image.shape[:2]
    return resize(image, max(1, round(height * scale)), max(1, round(width * scale)), interpolation)


def letterbox(image: np.ndarray, size: int, fill: tuple[float, float, float]) -> np.ndarray:
    """The longest side to `size`, then padded at the bottom and right to size x size with `fill` (0..255)."""
    resized = scaled(image, size / max(image.shape[:2]))
    bottom, right = size - resized.shape[0], size - resized.shape[1]
    return cv2.copyMakeBorder(resized, 0, bottom, 0, right, borderType=cv2.BORDER_CONSTANT, value=fill)


def shorter_side_crop(image: np.ndarray, side: int, height: int, width: int, interpolation: int) -> np.ndarray:
    """The shorter side to `side`, then the centre height x width."""
    resized = scaled(image, side / min(image.shape[:2]), interpolation)
    top, left = (resized.shape[0] - height) // 2, (resized.shape[1] - width) // 2
    return resized[top : top + height, left : left + width]


def input_scale(height: int, width: int, size: tuple[int, int], letterboxed: bool) -> np.ndarray:
    """(sx, sy), float32, with original pixels = input pixels * scale."""
    if letterboxed:
        side = max(height, width) / size[0]
        return np.array([side, side], dtype=np.float32)
    return np.array([width / size[1], height / size[0]], dtype=np.float32)


def prepare(image: np.ndarray, contract: Contract) -> tuple[np.ndarray, dict[str, Any]]:
    """uint8 RGB [H, W, 3] -> (the network's uint8 RGB [h, w, 3] input, meta {orig_size (H, W)[, scale (sx, sy)]})."""
    height, width = image.shape[:2]
    meta: dict[str, Any] = {"orig_size": (height, width)}
    if contract.resize == "stretch":
        meta["scale"] = input_scale(height, width, contract.size, letterboxed=False)
        return resize(image, *contract.size), meta
    if contract.resize == "letterbox":
        meta["scale"] = input_scale(height, width, contract.size, letterboxed=True)
        return letterbox(image, contract.size[0], contract.pad_value), meta
    if contract.resize == "shorter_side_crop":
        return shorter_side_crop(image, contract.resize_side, *contract.size, contract.interpolation), meta
    if contract.size is not None and (height, width) != contract.size:
        raise InputError(
            f"a {width}x{height} image: this model takes {contract.size[1]}x{contract.size[0]} (WxH) images only; "
            "export it with a dynamic image size to run other sizes"
        )
    return image, meta
