"""Detection transforms: SSD / SSDLite training policies, resize or letterbox, normalise, to tensor.

Built on albumentations 2.x. The two SSD operations albumentations lacks are small DualTransforms here:
`RandomIoUCrop` (the SSD paper's patch sampler, as torchvision.transforms.v2.RandomIoUCrop) and `RandomZoomOut`
(SSD's "expand" onto a mean-filled canvas). Boxes are pascal_voc x1, y1, x2, y2 in pixels throughout.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, get_args

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.augmentations.crops import functional as fcrops
from albumentations.augmentations.crops.transforms import BaseCrop
from albumentations.core.bbox_utils import denormalize_bboxes, normalize_bboxes
from albumentations.core.type_definitions import Targets
from albumentations.pytorch import ToTensorV2
from torchvision.ops import box_iou, clip_boxes_to_image, remove_small_boxes

Augment = Literal["ssd", "ssdlite", "flip", "none"]
AUGMENTS: tuple[str, ...] = get_args(Augment)

# SSD's sampler: minimum IoU of the patch with some object; 0.0 = any patch, >= 1.0 = keep the whole image.
SSD_MIN_IOU_OPTIONS: tuple[float, ...] = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)

# Boxes narrower or lower than this (pixels) are dropped, both from annotations and after each geometric step.
MIN_BOX_SIZE = 1.0


class RandomIoUCrop(BaseCrop):
    """SSD's random patch: IoU with some object >= a random minimum; keeps boxes whose centre is in the patch.

    Per call: draw a minimum IoU from `min_iou_options` (>= 1.0 keeps the whole image), then try up to `trials`
    patches of width and height `scale` x the image's (aspect ratio within `aspect_ratio`), anywhere in the image,
    accepting the first whose inside-centre boxes reach the minimum IoU; on failure draw a new minimum, as
    torchvision's RandomIoUCrop does (bounded here by `max_draws`). Images without boxes are left whole.
    """

    _targets = (Targets.IMAGE, Targets.MASK, Targets.BBOXES)

    def __init__(
        self,
        min_iou_options: Sequence[float] = SSD_MIN_IOU_OPTIONS,
        scale: tuple[float, float] = (0.3, 1.0),
        aspect_ratio: tuple[float, float] = (0.5, 2.0),
        trials: int = 50,
        max_draws: int = 100,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        self.min_iou_options = tuple(min_iou_options)
        self.scale = scale
        self.aspect_ratio = aspect_ratio
        self.trials = trials
        self.max_draws = max_draws

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        whole = {"crop_coords": (0, 0, width, height)}
        normalized = np.asarray(data.get("bboxes", np.zeros((0, 4))), dtype=np.float32)
        if len(normalized) == 0:
            return whole
        boxes = torch.from_numpy(denormalize_bboxes(normalized[:, :4].copy(), (height, width)))
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        for _ in range(self.max_draws):
            min_iou = self.py_random.choice(self.min_iou_options)
            if min_iou >= 1.0:
                return whole
            for _ in range(self.trials):
                crop_w = int(width * self.py_random.uniform(*self.scale))
                crop_h = int(height * self.py_random.uniform(*self.scale))
                if crop_w == 0 or crop_h == 0 or not self.aspect_ratio[0] <= crop_w / crop_h <= self.aspect_ratio[1]:
                    continue
                left = int((width - crop_w) * self.py_random.random())
                top = int((height - crop_h) * self.py_random.random())
                crop = torch.tensor([[left, top, left + crop_w, top + crop_h]], dtype=torch.float32)
                inside = _centres_inside(centres, crop[0])
                if not inside.any() or box_iou(boxes[inside], crop).max() < min_iou:
                    continue
                return {"crop_coords": (left, top, left + crop_w, top + crop_h)}
        return whole

    def apply_to_bboxes(self, bboxes: np.ndarray, crop_coords: tuple[int, int, int, int], **params: Any) -> np.ndarray:
        if len(bboxes) == 0:
            return bboxes
        height, width = params["shape"][:2]
        boxes = torch.from_numpy(denormalize_bboxes(bboxes[:, :4].astype(np.float32), (height, width)))
        inside = _centres_inside((boxes[:, :2] + boxes[:, 2:]) / 2, torch.tensor(crop_coords, dtype=torch.float32))
        return fcrops.crop_bboxes_by_coords(bboxes[inside.numpy()], crop_coords, (height, width))


def _centres_inside(centres: torch.Tensor, crop: torch.Tensor) -> torch.Tensor:
    """Which box centres lie strictly inside the crop x1, y1, x2, y2."""
    return (crop[0] < centres[:, 0]) & (centres[:, 0] < crop[2]) & (crop[1] < centres[:, 1]) & (centres[:, 1] < crop[3])


class RandomZoomOut(A.DualTransform):
    """SSD's "expand": place the image at a random spot of a canvas `side_range` times larger, filled with `fill`.

    Makes objects smaller, teaching the small-object detectors; `fill` should be the dataset mean (0-255 RGB).
    """

    _targets = (Targets.IMAGE, Targets.MASK, Targets.BBOXES)

    def __init__(
        self,
        fill: Sequence[float],
        side_range: tuple[float, float] = (1.0, 4.0),
        p: float = 0.5,
    ) -> None:
        super().__init__(p=p)
        if not 1.0 <= side_range[0] <= side_range[1]:
            raise ValueError(f"RandomZoomOut side_range must satisfy 1 <= low <= high, got {side_range}")
        self.fill = tuple(float(v) for v in fill)
        self.side_range = side_range

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        ratio = self.py_random.uniform(*self.side_range)
        canvas_h, canvas_w = int(height * ratio), int(width * ratio)
        left = int((canvas_w - width) * self.py_random.random())
        top = int((canvas_h - height) * self.py_random.random())
        return {"canvas_shape": (canvas_h, canvas_w), "offset": (left, top)}

    def apply(
        self, img: np.ndarray, canvas_shape: tuple[int, int], offset: tuple[int, int], **params: Any
    ) -> np.ndarray:
        canvas = np.empty((*canvas_shape, *img.shape[2:]), dtype=img.dtype)
        canvas[...] = np.asarray(self.fill[: img.shape[2]] if img.ndim == 3 else self.fill[0], dtype=img.dtype)
        left, top = offset
        canvas[top : top + img.shape[0], left : left + img.shape[1]] = img
        return canvas

    def apply_to_mask(
        self, mask: np.ndarray, canvas_shape: tuple[int, int], offset: tuple[int, int], **params: Any
    ) -> np.ndarray:
        canvas = np.zeros((*canvas_shape, *mask.shape[2:]), dtype=mask.dtype)
        left, top = offset
        canvas[top : top + mask.shape[0], left : left + mask.shape[1]] = mask
        return canvas

    def apply_to_bboxes(
        self, bboxes: np.ndarray, canvas_shape: tuple[int, int], offset: tuple[int, int], **params: Any
    ) -> np.ndarray:
        if len(bboxes) == 0:
            return bboxes
        moved = denormalize_bboxes(bboxes.astype(np.float32), params["shape"][:2])
        moved[:, [0, 2]] += offset[0]
        moved[:, [1, 3]] += offset[1]
        return normalize_bboxes(moved, canvas_shape)


def photometric_distort() -> list[A.BasicTransform]:
    """torchvision's RandomPhotometricDistort: each of brightness, contrast, saturation, hue with p=0.5."""
    identity = (1.0, 1.0)
    return [
        A.ColorJitter(brightness=(0.875, 1.125), contrast=identity, saturation=identity, hue=(0.0, 0.0), p=0.5),
        A.ColorJitter(brightness=identity, contrast=(0.5, 1.5), saturation=identity, hue=(0.0, 0.0), p=0.5),
        A.ColorJitter(brightness=identity, contrast=identity, saturation=(0.5, 1.5), hue=(0.0, 0.0), p=0.5),
        A.ColorJitter(brightness=identity, contrast=identity, saturation=identity, hue=(-0.05, 0.05), p=0.5),
    ]


def augmentation_policy(augment: Augment, mean: Sequence[float]) -> list[A.BasicTransform]:
    """The geometric/photometric training steps of a policy, before the final resize.

    "ssdlite": random IoU crop + horizontal flip (torchvision's SSDLite recipe);
    "ssd": photometric distortion + zoom-out (up to 4x, mean fill) + random IoU crop + flip (the SSD paper);
    "flip": horizontal flip alone (short runs, where crops that change the objects' scale slow learning);
    "none": nothing.
    """
    if augment == "none":
        return []
    if augment == "flip":
        return [A.HorizontalFlip(p=0.5)]
    if augment == "ssdlite":
        return [RandomIoUCrop(), A.HorizontalFlip(p=0.5)]
    if augment == "ssd":
        fill = tuple(255.0 * m for m in mean)
        return [*photometric_distort(), RandomZoomOut(fill=fill), RandomIoUCrop(), A.HorizontalFlip(p=0.5)]
    raise ValueError(f"unknown augment {augment!r}; valid values: {list(AUGMENTS)}")


def input_scale(height: int, width: int, image_size: int, letterbox: bool) -> torch.Tensor:
    """(sx, sy) with original = input * scale: W/S, H/S for a plain resize; max(H, W)/S twice for a letterbox."""
    if letterbox:
        side = max(height, width) / image_size
        return torch.tensor([side, side], dtype=torch.float32)
    return torch.tensor([width / image_size, height / image_size], dtype=torch.float32)


def clip_and_drop_small(boxes: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Clip x1, y1, x2, y2 boxes to the image; return them and the mask of those at least MIN_BOX_SIZE wide and high.

    The returned boxes are the clipped ones (all of them); index them with the mask to keep the valid ones.
    """
    clipped = clip_boxes_to_image(torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4), (height, width))
    keep = torch.zeros(len(clipped), dtype=torch.bool)
    keep[remove_small_boxes(clipped, MIN_BOX_SIZE)] = True
    return clipped.numpy(), keep.numpy()


class DetectionTransform:
    """uint8 RGB image + pixel boxes -> normalised float32 [3, S, S] tensor, boxes in input pixels, labels, scale.

    `augment` picks the training policy ("none" for evaluation); `letterbox` resizes the longest side to S and
    pads bottom/right with the mean (0 after normalising) instead of stretching to S x S.
    """

    def __init__(
        self,
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        augment: Augment = "none",
        letterbox: bool = False,
    ) -> None:
        if image_size < 1:
            raise ValueError(f"image_size must be a positive number of pixels, got {image_size}")
        self.image_size = image_size
        self.letterbox = letterbox
        if letterbox:
            fill = tuple(255.0 * m for m in mean)
            resize: list[A.BasicTransform] = [
                A.LongestMaxSize(max_size=image_size),
                A.PadIfNeeded(image_size, image_size, position="top_left", border_mode=cv2.BORDER_CONSTANT, fill=fill),
            ]
        else:
            resize = [A.Resize(image_size, image_size)]
        self.compose = A.Compose(
            [*augmentation_policy(augment, mean), *resize, A.Normalize(mean=mean, std=std), ToTensorV2()],
            bbox_params=A.BboxParams(
                format="pascal_voc",
                label_fields=["labels"],
                min_visibility=0.0,  # the IoU crop decides by box centre, as SSD does
                min_width=MIN_BOX_SIZE,
                min_height=MIN_BOX_SIZE,
                clip=True,
            ),
        )

    def set_random_seed(self, seed: int) -> None:
        """Seed the augmentation (albumentations keeps its own generator, copied as-is into forked workers)."""
        self.compose.set_random_seed(seed)

    def __call__(
        self, image: np.ndarray, boxes: np.ndarray | None = None, labels: np.ndarray | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (image [3, S, S] float32, boxes [N, 4] float32, labels [N] int64, scale [2] float32)."""
        height, width = image.shape[:2]
        boxes = np.zeros((0, 4), dtype=np.float32) if boxes is None else np.asarray(boxes, dtype=np.float32)
        labels = np.zeros((0,), dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
        out = self.compose(image=image, bboxes=boxes.reshape(-1, 4), labels=labels)
        out_boxes = torch.as_tensor(np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4))
        out_labels = torch.as_tensor(np.asarray(out["labels"], dtype=np.int64).reshape(-1))
        scale = input_scale(height, width, self.image_size, self.letterbox)
        return out["image"].float(), out_boxes, out_labels, scale
