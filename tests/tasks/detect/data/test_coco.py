"""COCO reader: item contract, category-id round trip, crowd/empty/tiny handling, errors, skips, scale."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO

import tasks.detect.data.formats.coco as coco_format
from tasks.common.images import UnreadableImageError
from tasks.common.index_cache import index_path
from tasks.common.synthetic import CACHE_ENV
from tasks.detect.data.formats.coco import DETECTION_INDEX, CocoDetection
from tasks.detect.data.module import collate_detection
from tasks.detect.data.records import DetectionRecord
from tasks.detect.data.transforms import DetectionTransform, clip_and_drop_small
from tests.tasks.detect.fixtures import edit_coco_annotations, write_coco_dataset

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
SIZE = 64


def _dataset(
    root: Path, split: str = "val", augment: str = "none", letterbox: bool = False, skip_bad_samples: bool = False
) -> CocoDetection:
    transform = DetectionTransform(SIZE, MEAN, STD, augment, letterbox)  # type: ignore[arg-type]
    return CocoDetection(root, split, transform, skip_bad_samples=skip_bad_samples)


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The index cache of these tests in their own folder."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def coco_root(tmp_path: Path) -> Path:
    return write_coco_dataset(tmp_path / "coco", num_images=4, image_size=96)


def test_items_and_collate_follow_the_contract(coco_root: Path) -> None:
    dataset = _dataset(coco_root, "train", augment="ssdlite")
    assert len(dataset) == 4
    image, target = dataset[0]
    assert image.shape == (3, SIZE, SIZE) and image.dtype == torch.float32
    assert set(target) == {"boxes", "labels", "image_id", "orig_size", "scale"}
    assert target["boxes"].dtype == torch.float32 and target["boxes"].shape[1:] == (4,)
    assert target["labels"].dtype == torch.int64 and target["labels"].shape == target["boxes"].shape[:1]
    assert isinstance(target["image_id"], int)
    assert target["orig_size"].dtype == torch.int64 and target["orig_size"].tolist() == [72, 96]
    assert target["scale"].dtype == torch.float32 and target["scale"].shape == (2,)
    images, targets = collate_detection([dataset[i] for i in range(3)])
    assert images.shape == (3, 3, SIZE, SIZE) and len(targets) == 3
    assert [t["image_id"] for t in targets] == [1, 2, 3]


def test_gapped_category_ids_round_trip(coco_root: Path) -> None:
    dataset = _dataset(coco_root)
    assert dataset.label_to_category_id == {1: 1, 2: 5, 3: 90}
    assert dataset.class_names == ["background", "cat1", "cat5", "cat90"]
    coco = dataset.coco_gt
    for index in range(len(dataset)):
        _, target = dataset[index]
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=[target["image_id"]]))
        expected = sorted(a["category_id"] for a in annotations)
        assert sorted(dataset.label_to_category_id[int(label)] for label in target["labels"]) == expected


def test_boxes_scale_back_to_the_annotations(coco_root: Path) -> None:
    for letterbox in (False, True):
        dataset = _dataset(coco_root, letterbox=letterbox)
        for index in range(len(dataset)):
            _, target = dataset[index]
            original = target["boxes"] * target["scale"].repeat(2)
            annotations = dataset.coco_gt.loadAnns(dataset.coco_gt.getAnnIds(imgIds=[target["image_id"]]))
            xywh = torch.tensor([a["bbox"] for a in annotations], dtype=torch.float32)
            expected = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)
            torch.testing.assert_close(original, expected, atol=1.0, rtol=0)


def _add_annotation(document: dict[str, Any], image_id: int, bbox: list[float], category_id: int, **extra: Any) -> int:
    annotation_id = max(a["id"] for a in document["annotations"]) + 1
    document["annotations"].append(
        {"id": annotation_id, "image_id": image_id, "category_id": category_id, "bbox": bbox, "area": 1.0}
        | {"iscrowd": 0}
        | extra
    )
    return annotation_id


def test_crowd_boxes_are_not_trained_on_but_stay_in_coco_gt(coco_root: Path) -> None:
    before = len(_dataset(coco_root)[0][1]["labels"])
    crowd_ids: list[int] = []
    edit_coco_annotations(
        coco_root, "val", lambda d: crowd_ids.append(_add_annotation(d, 1, [5.0, 5.0, 40.0, 40.0], 5, iscrowd=1))
    )
    dataset = _dataset(coco_root)
    assert len(dataset[0][1]["labels"]) == before
    assert dataset.coco_gt.anns[crowd_ids[0]]["iscrowd"] == 1
    boxes, labels, difficult = dataset.voc_ground_truth()[1]
    assert difficult.sum() == 1 and labels[difficult].tolist() == [2]
    np.testing.assert_allclose(boxes[difficult], [[5, 5, 45, 45]])


def test_images_without_annotations_are_kept(coco_root: Path) -> None:
    def add_empty_image(document: dict[str, Any]) -> None:
        document["images"].append({"id": 77, "file_name": "val_0001.jpg", "width": 96, "height": 72})

    edit_coco_annotations(coco_root, "val", add_empty_image)
    dataset = _dataset(coco_root)
    assert len(dataset) == 5
    _, target = dataset[4]
    assert target["image_id"] == 77
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)
    _, targets = collate_detection([dataset[4], dataset[0]])
    assert targets[0]["boxes"].shape == (0, 4)


def test_tiny_boxes_are_clipped_dropped_and_counted(coco_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    def add_bad_boxes(document: dict[str, Any]) -> None:
        _add_annotation(document, 1, [10.0, 10.0, 0.5, 20.0], 1)  # 0.5 px wide
        _add_annotation(document, 1, [96.2, 10.0, 30.0, 20.0], 1)  # right of the image: nothing left after clip
        _add_annotation(document, 2, [80.0, 60.0, 50.0, 50.0], 90)  # runs off the corner: clipped, kept

    before = [len(_dataset(coco_root)[i][1]["labels"]) for i in (0, 1)]
    edit_coco_annotations(coco_root, "val", add_bad_boxes)
    with caplog.at_level(logging.WARNING, logger="tasks.detect.data.formats.coco"):
        dataset = _dataset(coco_root)
    assert dataset.dropped_boxes == 2
    assert [len(dataset[i][1]["labels"]) for i in (0, 1)] == [before[0], before[1] + 1]
    assert sum("dropped 2 boxes" in r.getMessage() for r in caplog.records) == 1
    _, target = dataset[1]
    clipped = target["boxes"][-1] * target["scale"].repeat(2)
    torch.testing.assert_close(clipped, torch.tensor([80.0, 60.0, 96.0, 72.0]), atol=1.0, rtol=0)


def test_unknown_category_id_names_the_file_and_id(coco_root: Path) -> None:
    edit_coco_annotations(coco_root, "val", lambda d: _add_annotation(d, 1, [1.0, 1.0, 9.0, 9.0], 42))
    with pytest.raises(ValueError, match=r"instances_val\.json.*category_id 42"):
        _dataset(coco_root)


def test_missing_annotation_file_and_image_folder_name_the_path(coco_root: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"instances_nosuch\.json"):
        _dataset(coco_root, "nosuch")
    shutil.rmtree(coco_root / "val")
    with pytest.raises(FileNotFoundError, match=str(coco_root / "val")):
        _dataset(coco_root)


def test_images_subfolder_and_file_names_with_a_sub_path(coco_root: Path) -> None:
    (coco_root / "images").mkdir()
    shutil.move(coco_root / "val", coco_root / "images" / "val")
    assert _dataset(coco_root)[0][0].shape == (3, SIZE, SIZE)

    def prefix(document: dict[str, Any]) -> None:
        for image in document["images"]:
            image["file_name"] = f"images/val/{image['file_name']}"

    edit_coco_annotations(coco_root, "val", prefix)
    dataset = _dataset(coco_root)
    assert dataset.records[0].path == coco_root / "images" / "val" / "val_0001.jpg"
    assert dataset[0][0].shape == (3, SIZE, SIZE)


def test_corrupt_image_is_an_error_by_default(coco_root: Path) -> None:
    (coco_root / "val" / "val_0002.jpg").write_bytes((coco_root / "val" / "val_0002.jpg").read_bytes()[:300])
    dataset = _dataset(coco_root)
    assert dataset[0][1]["image_id"] == 1
    with pytest.raises(UnreadableImageError, match=r"cannot read image .*val_0002\.jpg"):
        dataset[1]


def test_corrupt_image_is_skipped_and_counted(coco_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    (coco_root / "val" / "val_0002.jpg").write_bytes((coco_root / "val" / "val_0002.jpg").read_bytes()[:300])
    dataset = _dataset(coco_root, skip_bad_samples=True)
    with caplog.at_level(logging.WARNING, logger="tasks.common.images"):
        ids = [dataset[i][1]["image_id"] for i in range(len(dataset))]
        dataset[1]
    assert ids == [1, 3, 3, 4]  # the unreadable image 2 is replaced by the next readable one
    assert dataset.skipped_images == 2  # every skip counts; the warning is logged once per file
    assert sum("val_0002.jpg" in r.getMessage() for r in caplog.records) == 1


def test_coco_gt_is_the_annotation_file_without_masks(coco_root: Path) -> None:
    def add_polygons(document: dict[str, Any]) -> None:
        for annotation in document["annotations"]:
            x, y, w, h = annotation["bbox"]
            annotation["segmentation"] = [[x, y, x + w, y, x + w, y + h]]

    edit_coco_annotations(coco_root, "val", add_polygons)
    dataset = _dataset(coco_root)
    reference = COCO(str(coco_root / "annotations" / "instances_val.json"))
    for annotation in reference.dataset["annotations"]:
        annotation["segmentation"] = None  # box evaluation reads no masks
    assert isinstance(dataset.coco_gt, COCO)
    assert dataset.coco_gt.dataset == reference.dataset
    document = json.loads((coco_root / "annotations" / "instances_val.json").read_text())
    assert len(dataset.coco_gt.anns) == len(document["annotations"])


# -- flat records and the index cache --------------------------------------------------------------------------------
def reference_records(root: Path, split: str = "val") -> list[DetectionRecord]:
    """The records as the reader built them before the flat arrays: pycocotools' index, one record per image."""
    annotation_file = root / "annotations" / f"instances_{split}.json"
    coco = COCO(str(annotation_file))
    category_to_label = {cid: label for label, cid in enumerate(sorted(coco.getCatIds()), start=1)}
    records = []
    for image_id in sorted(coco.imgs):
        info = coco.imgs[image_id]
        annotations = coco.imgToAnns.get(image_id, [])
        xywh = np.array([a["bbox"] for a in annotations], dtype=np.float32).reshape(-1, 4)
        boxes, valid = clip_and_drop_small(
            np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1), info["height"], info["width"]
        )
        crowd = np.array([bool(a.get("iscrowd", 0)) for a in annotations], dtype=bool)
        labels = np.array([category_to_label[a["category_id"]] for a in annotations], dtype=np.int64)
        records.append(
            DetectionRecord(
                int(image_id),
                root / split / info["file_name"],
                info["width"],
                info["height"],
                boxes[valid],
                labels[valid],
                crowd[valid],
                f"{annotation_file} (image id {image_id})",
            )
        )
    return records


def assert_records_equal(actual: list[DetectionRecord], expected: list[DetectionRecord]) -> None:
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        assert (got.image_id, got.path, got.width, got.height, got.source) == (
            want.image_id,
            want.path,
            want.width,
            want.height,
            want.source,
        )
        for field in ("boxes", "labels", "ignore"):
            value, reference = getattr(got, field), getattr(want, field)
            assert value.dtype == reference.dtype and value.shape == reference.shape, field
            np.testing.assert_array_equal(value, reference, err_msg=field)


def test_flat_records_equal_the_per_image_records(coco_root: Path) -> None:
    def edit(document: dict[str, Any]) -> None:
        _add_annotation(document, 3, [5.0, 5.0, 40.0, 40.0], 5, iscrowd=1)
        _add_annotation(document, 1, [10.0, 10.0, 0.5, 20.0], 1)  # dropped
        _add_annotation(document, 2, [80.0, 60.0, 50.0, 50.0], 90)  # clipped
        _add_annotation(document, 2, [-3.5, -2.25, 20.0, 20.0], 5, iscrowd=1)  # clipped crowd
        document["images"].insert(0, {"id": 77, "file_name": "val_0001.jpg", "width": 96, "height": 72})
        document["images"].append({"id": 0, "file_name": "val_0002.jpg", "width": 96, "height": 72})
        document["annotations"].reverse()  # file order within an image is kept

    edit_coco_annotations(coco_root, "val", edit)
    dataset = _dataset(coco_root)
    records = list(dataset.records)
    assert_records_equal(records, reference_records(coco_root))
    assert [r.image_id for r in records] == [0, 1, 2, 3, 4, 77]
    assert dataset.records[-1].image_id == 77
    with pytest.raises(IndexError):
        dataset.records[6]
    reference = {r.image_id: r for r in reference_records(coco_root)}
    for image_id, (boxes, labels, difficult) in dataset.voc_ground_truth().items():
        np.testing.assert_array_equal(labels, reference[image_id].labels)
        np.testing.assert_array_equal(boxes, reference[image_id].boxes.astype(np.float64))
        np.testing.assert_array_equal(difficult, reference[image_id].ignore)


def test_second_set_up_reads_the_cache_not_the_json(coco_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _dataset(coco_root)
    assert first._coco_gt is None  # pycocotools' index only when evaluation asks for it
    calls: list[Path] = []
    monkeypatch.setattr(coco_format, "read_coco_json_without_segmentation", lambda path: calls.append(path) or {})
    second = _dataset(coco_root)
    assert calls == []
    assert_records_equal(list(second.records), list(first.records))
    assert second.label_to_category_id == first.label_to_category_id and second.class_names == first.class_names
    torch.testing.assert_close(second[1][0], first[1][0])


def test_the_cache_is_rebuilt_when_the_file_changes(coco_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _dataset(coco_root)
    parsed: list[Path] = []
    original = coco_format.read_coco_json_without_segmentation
    monkeypatch.setattr(
        coco_format, "read_coco_json_without_segmentation", lambda path: parsed.append(path) or original(path)
    )
    edit_coco_annotations(coco_root, "val", lambda d: _add_annotation(d, 1, [1.0, 2.0, 30.0, 30.0], 90))
    path = coco_root / "annotations" / "instances_val.json"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a new mtime even on a coarse clock
    dataset = _dataset(coco_root)
    assert len(parsed) == 1
    assert_records_equal(list(dataset.records), reference_records(coco_root))
    assert dataset.records[0].labels[-1] == 3


def test_a_corrupt_cache_is_rebuilt_with_a_message(
    coco_root: Path, _cache_in_tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _dataset(coco_root)
    cache_file = index_path(coco_root / "annotations" / "instances_val.json", DETECTION_INDEX, _cache_in_tmp)
    cache_file.write_bytes(cache_file.read_bytes()[:100])
    with caplog.at_level(logging.WARNING, logger="tasks.common.index_cache"):
        dataset = _dataset(coco_root)
    assert any("corrupt" in r.getMessage() for r in caplog.records)
    assert_records_equal(list(dataset.records), reference_records(coco_root))


def test_records_pickle_small_for_spawned_workers(coco_root: Path) -> None:
    import pickle

    dataset = _dataset(coco_root)
    clone = pickle.loads(pickle.dumps(dataset))
    assert_records_equal(list(clone.records), list(dataset.records))
    torch.testing.assert_close(clone[2][0], dataset[2][0])
