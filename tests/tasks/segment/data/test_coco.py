"""COCO as VOC masks from the compact index: masks equal pycocotools' rasterisation of the file, the cache is used."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

import tasks.segment.data.coco_index as coco_index
from tasks.common.synthetic import CACHE_ENV
from tasks.segment.data.coco_index import snap_to_polygon_grid
from tasks.segment.data.coco_masks import coco_semantic_mask
from tasks.segment.data.formats.coco import CocoSegmentation
from tasks.segment.data.masks import COCO_VOC_CATEGORY_IDS, InvalidMaskError
from tests.tasks.detect.fixtures import edit_coco_annotations
from tests.tasks.segment.fixtures import NON_VOC_CATEGORY_ID, write_coco_segmentation


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))


def previous_masks(root: Path, split: str, image_ids: list[int]) -> list[np.ndarray]:
    """The masks as the reader made them before the index: pycocotools' index of the file, its JSON polygons."""
    annotation_file = root / "annotations" / f"instances_{split}.json"
    coco = COCO(str(annotation_file))
    category_to_label = {cid: label for label, cid in enumerate(COCO_VOC_CATEGORY_IDS) if label > 0}
    masks = []
    for image_id in image_ids:
        info = coco.imgs[image_id]
        annotations = [a for a in coco.imgToAnns.get(image_id, []) if a["category_id"] in category_to_label]
        masks.append(coco_semantic_mask(annotations, info["height"], info["width"], category_to_label))
    return masks


def awkward_annotations(document: dict[str, Any]) -> None:
    """Polygons on pycocotools' rounding boundaries (x.1, x.3, ...), off the image, several parts; RLE both ways."""
    rng = np.random.default_rng(3)
    next_id = max(a["id"] for a in document["annotations"]) + 1
    voc_ids = COCO_VOC_CATEGORY_IDS[1:]
    for image in document["images"]:
        width, height = image["width"], image["height"]
        for _ in range(4):
            points = int(rng.integers(3, 12))
            polygon = np.round(rng.uniform(-3, max(width, height) + 3, 2 * points) * 10) / 10  # tenths: boundaries
            parts = [polygon.tolist()]
            if rng.random() < 0.5:
                parts.append(np.round(rng.uniform(0, width, 8), 2).tolist())
            document["annotations"].append(
                {
                    "id": next_id,
                    "image_id": image["id"],
                    "category_id": int(voc_ids[int(rng.integers(len(voc_ids)))]),
                    "segmentation": parts,
                    "area": 50.0,
                    "iscrowd": 0,
                }
            )
            next_id += 1
        block = np.zeros((height, width), dtype=np.uint8, order="F")
        block[5:20, 10:40] = 1
        compressed = mask_utils.encode(block)
        document["annotations"].append(
            {
                "id": next_id,
                "image_id": image["id"],
                "category_id": 1,
                "segmentation": {"size": compressed["size"], "counts": compressed["counts"].decode()},
                "iscrowd": 1,
            }
        )
        counts = [height * 12 + 3, 7, height - 7, 7, width * height - height * 13 - 10]  # sums to H * W
        document["annotations"].append(
            {
                "id": next_id + 1,
                "image_id": image["id"],
                "category_id": 18,
                "segmentation": {"size": [height, width], "counts": counts},  # uncompressed RLE
                "area": 14.0,
                "iscrowd": 1,
            }
        )
        next_id += 2


@pytest.mark.parametrize("split", ["train", "val"])
def test_masks_equal_the_previous_rasterisation(tmp_path: Path, split: str) -> None:
    root = write_coco_segmentation(tmp_path / "coco", num_images=4, image_size=64)
    edit_coco_annotations(root, split, awkward_annotations)
    dataset = CocoSegmentation(root, split, transform=None, remove_images_without_annotations=split == "train")
    assert len(dataset) == 4  # the last train image now has VOC annotations too
    expected = previous_masks(root, split, dataset.image_ids)
    for index, reference in enumerate(expected):
        image, mask = dataset._read(index)
        assert image.shape[:2] == mask.shape
        np.testing.assert_array_equal(mask, reference)
    assert any((m > 0).any() and (m < 255).any() for m in expected)


def test_training_leaves_out_the_same_images_as_before(tmp_path: Path) -> None:
    root = write_coco_segmentation(tmp_path / "coco", num_images=5, image_size=64)
    dataset = CocoSegmentation(root, "train", transform=None, remove_images_without_annotations=True)
    assert dataset.removed_images == 1 and dataset.image_ids == [1, 2, 3, 4]
    assert len(CocoSegmentation(root, "train", transform=None)) == 5


def test_snapped_coordinates_quantise_as_the_originals() -> None:
    rng = np.random.default_rng(0)
    values = np.concatenate(
        [
            np.round(rng.uniform(-50, 5000, 200_000), 1),  # tenths: 5 x + 0.5 lands on integers
            np.round(rng.uniform(-50, 5000, 200_000), 2),
            rng.uniform(-50, 99_999, 200_000),
            np.array([0.0, -0.0, 0.1, -0.1, 0.3, -0.3, 0.7, -0.7, 99_999.9]),
        ]
    )
    snapped = snap_to_polygon_grid(values)
    assert snapped.dtype == np.float32
    np.testing.assert_array_equal(np.trunc(5.0 * snapped.astype(np.float64) + 0.5), np.trunc(5.0 * values + 0.5))


def test_second_set_up_reads_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_coco_segmentation(tmp_path / "coco", num_images=3, image_size=64)
    first = CocoSegmentation(root, "val", transform=None)
    monkeypatch.setattr(coco_index, "read_coco_json", lambda path: pytest.fail(f"parsed {path} again"))
    second = CocoSegmentation(root, "val", transform=None)
    assert second.image_ids == first.image_ids
    np.testing.assert_array_equal(second._read(1)[1], first._read(1)[1])


def test_unreadable_segmentation_names_the_annotation(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = write_coco_segmentation(tmp_path / "coco", num_images=2, image_size=64)

    def break_one(document: dict[str, Any]) -> None:
        annotation = next(a for a in document["annotations"] if a["category_id"] != NON_VOC_CATEGORY_ID)
        annotation["segmentation"] = [["a", "b", "c", "d", "e", "f"]]
        annotation["id"] = 4242
        annotation["image_id"] = 1

    edit_coco_annotations(root, "val", break_one)
    dataset = CocoSegmentation(root, "val", transform=None)
    with pytest.raises(InvalidMaskError, match=r"instances_val\.json \(image id 1\): annotation 4242"):
        dataset._read(0)
    with caplog.at_level(logging.WARNING):
        assert dataset._read(1)[1].shape == (48, 64)
