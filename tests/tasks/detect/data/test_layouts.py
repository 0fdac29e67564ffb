"""Detection data at any path: COCO layouts discovered under a root, files named by arguments, a validation split
held out of data without one (COCO, VOC without ImageSets/), and the errors when nothing is found."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tasks.common.categories import VOC_CLASS_NAMES
from tasks.common.coco_layout import coco_layout
from tasks.common.formats import DatasetNotFoundError
from tasks.detect.data.module import DetectionDataModule
from tasks.detect.metrics.coco import CocoEvaluator
from tests.tasks.detect.data.layouts import (
    COCO_LAYOUTS,
    cvat_single,
    named_arguments,
    named_files,
    voc_without_lists,
)
from tests.tasks.detect.fixtures import write_coco_dataset, write_voc_dataset


def _data(tmp_path: Path, **kwargs: Any) -> DetectionDataModule:
    settings = {"format": "coco", "image_size": 32, "batch_size": 2, "num_workers": 0}
    return DetectionDataModule(**{**settings, "cache_dir": str(tmp_path / "cache"), **kwargs})


@pytest.mark.parametrize("layout", list(COCO_LAYOUTS))
def test_each_layout_is_found_under_root(tmp_path: Path, layout: str) -> None:
    files = COCO_LAYOUTS[layout](tmp_path / layout)
    data = _data(tmp_path, root=str(tmp_path / layout))
    assert data.class_names == ["background", "cat3", "cat7", "cat11"]
    assert data.label_to_category_id == {1: 3, 2: 7, 3: 11}
    data.setup("fit")
    for role, dataset in (("train", data.train_dataset), ("val", data.val_dataset)):
        assert dataset.annotation_file == files[role]
        assert len(dataset) > 0 and dataset[0][0].shape == (3, 32, 32)  # its images are found
    if layout != "cvat_single":
        assert len(data.train_dataset) == len(data.val_dataset) == 4 and data.val_dataset.held_out is None


def test_the_data_modules_own_split_names_come_first(tmp_path: Path) -> None:
    root = write_coco_dataset(tmp_path / "coco", 2, 64, ("train", "val", "minival", "val2017"))
    assert coco_layout(_data(tmp_path, root=str(root))).source("val").annotation_file.stem == "instances_val"
    minival = coco_layout(_data(tmp_path, root=str(root), val_split="minival")).source("val")
    assert minival.annotation_file.stem == "instances_minival"


def test_files_named_by_arguments_at_any_path(tmp_path: Path) -> None:
    found = named_files(tmp_path)
    data = _data(tmp_path, **named_arguments(found))  # no root
    data.setup("fit")
    assert data.train_dataset.annotation_file == found["train"] and len(data.train_dataset) == 4
    assert data.val_dataset.records[0].path.parent == found["val_images"]
    test = {"test_annotations": str(found["val"]), "test_images": str(found["val_images"])}
    tested = _data(tmp_path, **named_arguments(found), **test)
    tested.setup("test")  # test_annotations alone make the test split the given file, not val
    assert tested.test_split == "test" and tested.test_dataset.annotation_file == found["val"]
    # images default to the annotation file's folder
    for image in found["val_images"].iterdir():
        image.rename(found["val"].parent / image.name)
    alone = _data(tmp_path, train_annotations=str(found["train"]), val_annotations=str(found["val"]))
    alone.setup("validate")
    assert alone.val_dataset[0][0].shape == (3, 32, 32)


def test_held_out_validation_is_seeded_disjoint_and_evaluated_alone(tmp_path: Path) -> None:
    annotation_file = cvat_single(tmp_path / "cvat", num_images=10)["train"]
    data = _data(tmp_path, root=str(tmp_path / "cvat"), val_fraction=0.3)
    data.setup("fit")
    train, val = data.train_dataset, data.val_dataset
    train_ids, val_ids = [r.image_id for r in train.records], [r.image_id for r in val.records]
    assert len(val_ids) == 3 and len(train_ids) == 7
    assert sorted(train_ids + val_ids) == list(range(1, 11))  # every image, each in one part
    assert sorted(val.coco_gt.getImgIds()) == sorted(val_ids)  # COCOeval sees the val images only
    document = json.loads(annotation_file.read_text())
    assert len(val.coco_gt.getAnnIds()) == sum(a["image_id"] in val_ids for a in document["annotations"])
    assert CocoEvaluator(val.coco_gt, val.label_to_category_id).num_images_total == 3
    assert val.held_out.val_names == [r.path.name for r in val.records] and val.held_out.train_count == 7
    again = _data(tmp_path, root=str(tmp_path / "cvat"), val_fraction=0.3)
    again.setup("validate")
    assert [r.image_id for r in again.val_dataset.records] == val_ids  # the same split every run
    trained_alone = _data(
        tmp_path, train_annotations=str(annotation_file), train_images=str(tmp_path / "cvat" / "images")
    )
    trained_alone.setup("validate")  # train_annotations without val_annotations: the same held-out split
    assert len(trained_alone.val_dataset) == 1


def test_a_missing_split_says_what_was_looked_for(tmp_path: Path) -> None:
    root = write_coco_dataset(tmp_path / "coco", 2, 64, ("val",))
    data = _data(tmp_path, root=str(root))
    data.setup("validate")  # a val file alone is enough to validate
    with pytest.raises(DatasetNotFoundError, match=r"no train annotations .*instances_\{train,train2017\}\.json"):
        data.setup("fit")


def test_no_layout_lists_the_json_files_and_the_arguments(tmp_path: Path) -> None:
    root = tmp_path / "mystery"
    for name in ("labels/part1.json", "labels/part2.json", "meta.json", "a/b/c/too_deep.json"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("{}")
    with pytest.raises(DatasetNotFoundError) as error:
        _ = _data(tmp_path, root=str(root)).class_names
    message = str(error.value)
    assert message.startswith(f"no COCO dataset layout found under {root}: expected annotations/instances_")
    assert ".json files there: labels/part1.json, labels/part2.json, meta.json." in message
    assert message.endswith(
        "--data.train_annotations FILE --data.train_images DIR --data.val_annotations FILE --data.val_images DIR"
    )
    assert "\n" not in message
    with pytest.raises(DatasetNotFoundError, match="data root .*absent does not exist"):
        _ = _data(tmp_path, root=str(tmp_path / "absent")).class_names


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({}, ValueError, r"needs root=<dataset folder> or train_annotations or val_annotations"),
        ({"format": "voc", "root": "/data", "train_annotations": "a.json"}, ValueError, "for format='coco' only"),
        ({"train_images": "/images", "val_annotations": "b.json"}, ValueError, "train_images needs train_annotations"),
        ({"root": "/data", "val_annotations": "b.json"}, ValueError, "give root .* or the annotation files, not both"),
        ({"val_annotations": "/nowhere/b.json"}, DatasetNotFoundError, r"val_annotations='/nowhere/b\.json': no such"),
        ({"root": "/data", "val_fraction": 1.0}, ValueError, r"val_fraction must be in \(0, 1\)"),
    ],
)
def test_argument_errors_name_the_argument(tmp_path: Path, kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        _ = _data(tmp_path, **kwargs).class_names


def test_voc_without_image_sets_reads_every_image_and_its_own_classes(tmp_path: Path) -> None:
    folder = voc_without_lists(tmp_path / "voc", num_images=6)
    data = _data(tmp_path, format="voc", root=str(folder))
    assert data.class_names == ["background", "cog", "gadget", "person", "sprocket", "widget"]  # sorted
    assert data.label_to_category_id == {1: 1, 2: 2, 3: 3, 4: 4, 5: 5}
    data.setup("fit")
    train_ids = [r.image_id for r in data.train_dataset.records]
    val_ids = [r.image_id for r in data.val_dataset.records]
    assert len(val_ids) == 1 and sorted(train_ids + val_ids) == list(range(1, 7))
    assert sorted(data.val_dataset.coco_gt.getImgIds()) == val_ids
    assert [c["name"] for c in data.val_dataset.coco_gt.dataset["categories"]] == data.class_names[1:]
    assert data.val_dataset.held_out.val_names == [r.path.name for r in data.val_dataset.records]
    assert data.train_dataset[0][0].shape == (3, 32, 32)


def test_voc_without_image_sets_with_voc_names_or_given_names(tmp_path: Path) -> None:
    folder = voc_without_lists(tmp_path / "voc", num_images=4, rename={})
    assert _data(tmp_path, format="voc", root=str(folder)).class_names == VOC_CLASS_NAMES
    custom = voc_without_lists(tmp_path / "custom", num_images=4)
    given = _data(tmp_path, format="voc", root=str(custom), class_names=["background", "widget", "gadget"])
    with pytest.raises(ValueError, match=r"unknown VOC class '(sprocket|cog|person)'; valid names: \['widget', "):
        given.setup("fit")


def test_voc_with_image_sets_is_unchanged(tmp_path: Path) -> None:
    year = write_voc_dataset(tmp_path / "devkit", num_images=4) / "VOC2007"
    data = _data(tmp_path, format="voc", root=str(year), train_split="train", val_split="val")
    assert data.class_names == VOC_CLASS_NAMES
    data.setup("fit")
    assert [r.path.stem for r in data.val_dataset.records] == ["2007_000001", "2007_000003"]
    assert data.val_dataset.held_out is None
