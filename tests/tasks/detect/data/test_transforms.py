"""SSD transforms: hand-made crop cases, zoom-out against the pixels, letterbox geometry, policy invariants."""

from __future__ import annotations

from typing import Any

import albumentations as A
import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from tasks.detect.data.transforms import (
    AUGMENTS,
    DetectionTransform,
    RandomIoUCrop,
    RandomZoomOut,
    clip_and_drop_small,
    input_scale,
)

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _bbox_compose(transform: A.BasicTransform) -> A.Compose:
    params = A.BboxParams(format="pascal_voc", label_fields=["labels"], min_width=1, min_height=1, clip=True)
    return A.Compose([transform], bbox_params=params)


class FixedCrop(RandomIoUCrop):
    """RandomIoUCrop with a chosen patch, to check its box handling by hand."""

    def __init__(self, crop: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.crop = crop

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        return {"crop_coords": self.crop}


def test_iou_crop_keeps_boxes_with_centre_inside_and_clips_them() -> None:
    image = np.zeros((100, 100, 3), dtype=np.uint8)
    boxes = np.array(
        [
            [10, 10, 30, 30],  # centre (20, 20): inside the patch, wholly
            [40, 40, 80, 60],  # centre (60, 50): inside, sticks out right -> clipped at x = 50 (patch coords 40)
            [60, 0, 90, 20],  # centre (75, 10): outside -> dropped although it overlaps the patch
            [0, 45, 14, 55],  # centre (7, 50): outside (left of x = 10) -> dropped though partly inside
        ],
        dtype=np.float32,
    )
    out = _bbox_compose(FixedCrop((10, 5, 70, 95)))(image=image, bboxes=boxes, labels=[1, 2, 3, 4])
    assert out["image"].shape == (90, 60, 3)
    np.testing.assert_allclose(np.asarray(out["bboxes"]), [[0, 5, 20, 25], [30, 35, 60, 55]], atol=1e-4)
    assert list(out["labels"]) == [1, 2]


@pytest.mark.parametrize("min_iou", [0.1, 0.3, 0.5, 0.7])
def test_iou_crop_reaches_the_drawn_minimum_iou(min_iou: float) -> None:
    crop = RandomIoUCrop(min_iou_options=(min_iou,))
    crop.set_random_seed(0)
    boxes = np.array([[20, 30, 70, 90], [5, 5, 25, 20]], dtype=np.float32)
    normalized = boxes / np.array([120, 100, 120, 100], dtype=np.float32)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    patches = 0
    for _ in range(20):
        params = crop.get_params_dependent_on_data({"shape": (100, 120, 3)}, {"bboxes": normalized})
        x1, y1, x2, y2 = params["crop_coords"]
        if (x1, y1, x2, y2) == (0, 0, 120, 100):
            continue  # every trial failed: the whole image, as when the "keep" option is drawn
        patches += 1
        inside = (x1 < centres[:, 0]) & (centres[:, 0] < x2) & (y1 < centres[:, 1]) & (centres[:, 1] < y2)
        patch = torch.tensor([[x1, y1, x2, y2]], dtype=torch.float32)
        assert box_iou(torch.from_numpy(boxes[inside]), patch).max() >= min_iou
        assert 0.5 <= (x2 - x1) / (y2 - y1) <= 2.0
        assert (x2 - x1) >= int(0.3 * 120) and (y2 - y1) >= int(0.3 * 100)
    assert patches >= 15


def test_iou_crop_leaves_images_without_boxes_whole() -> None:
    crop = RandomIoUCrop(min_iou_options=(0.5,))
    params = crop.get_params_dependent_on_data({"shape": (40, 50, 3)}, {"bboxes": np.zeros((0, 4), np.float32)})
    assert params["crop_coords"] == (0, 0, 50, 40)


def test_zoom_out_moves_boxes_with_the_pixels() -> None:
    image = np.zeros((40, 60, 3), dtype=np.uint8)
    image[10:30, 20:50] = 255
    zoom = RandomZoomOut(fill=(0, 0, 0), side_range=(2.0, 3.0), p=1.0)
    zoom.set_random_seed(3)
    out = _bbox_compose(zoom)(image=image, bboxes=np.array([[20, 10, 50, 30]], np.float32), labels=[7])
    assert out["image"].shape[0] >= 80 and out["image"].shape[1] >= 120
    ys, xs = np.nonzero(out["image"][..., 0])
    np.testing.assert_allclose(np.asarray(out["bboxes"])[0], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    assert list(out["labels"]) == [7]


@pytest.mark.parametrize("augment", AUGMENTS)
def test_policies_keep_boxes_inside_the_input(augment: str) -> None:
    rng = np.random.default_rng(0)
    transform = DetectionTransform(64, MEAN, STD, augment)  # type: ignore[arg-type]
    transform.set_random_seed(0)
    image = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    boxes = np.array([[0, 0, 40, 30], [50, 20, 119, 89], [100, 70, 120, 90]], dtype=np.float32)
    for _ in range(40):
        tensor, out_boxes, labels, scale = transform(image, boxes, np.array([1, 2, 3]))
        assert tensor.shape == (3, 64, 64) and tensor.dtype == torch.float32
        assert out_boxes.dtype == torch.float32 and labels.dtype == torch.int64
        assert len(out_boxes) == len(labels)
        assert (out_boxes >= 0).all() and (out_boxes <= 64).all()
        assert (out_boxes[:, 2:] - out_boxes[:, :2] >= 1).all()
        assert set(labels.tolist()) <= {1, 2, 3}


def test_plain_resize_scale_maps_back_to_original() -> None:
    image = np.zeros((90, 120, 3), dtype=np.uint8)
    boxes = np.array([[12, 9, 60, 45]], dtype=np.float32)
    _, out_boxes, _, scale = DetectionTransform(64, MEAN, STD)(image, boxes, np.array([1]))
    torch.testing.assert_close(scale, torch.tensor([120 / 64, 90 / 64]))
    torch.testing.assert_close(out_boxes * scale.repeat(2), torch.from_numpy(boxes), atol=1e-3, rtol=0)


def test_letterbox_puts_content_top_left_and_pads_with_the_mean() -> None:
    image = np.full((50, 100, 3), 255, dtype=np.uint8)
    boxes = np.array([[10, 10, 90, 40]], dtype=np.float32)
    tensor, out_boxes, _, scale = DetectionTransform(64, MEAN, STD, letterbox=True)(image, boxes, np.array([1]))
    torch.testing.assert_close(scale, torch.tensor([100 / 64, 100 / 64]))
    torch.testing.assert_close(out_boxes * scale.repeat(2), torch.from_numpy(boxes), atol=1e-3, rtol=0)
    white = (1.0 - torch.tensor(MEAN)) / torch.tensor(STD)
    torch.testing.assert_close(tensor[:, :32, :], white[:, None, None].expand(3, 32, 64))
    assert tensor[:, 33:, :].abs().max() < 0.02  # the mean fill normalises to ~0
    torch.testing.assert_close(input_scale(50, 100, 64, letterbox=True), scale)


def test_clip_and_drop_small() -> None:
    boxes = np.array([[-5, -5, 10, 10], [95, 10, 130, 20], [30, 30, 30.5, 60], [99.5, 0, 140, 5]], np.float32)
    clipped, keep = clip_and_drop_small(boxes, height=50, width=100)
    np.testing.assert_allclose(clipped[keep], [[0, 0, 10, 10], [95, 10, 100, 20]])
    assert keep.tolist() == [True, True, False, False]


def test_unknown_augment_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="ssdlite"):
        DetectionTransform(64, MEAN, STD, "mosaic")  # type: ignore[arg-type]
