"""Reading COCO files for boxes only: `read_coco_json_without_segmentation` equals the whole parse with every
annotation's `segmentation` null, for every form a segmentation takes, and falls back to the whole parse."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.data_scale import write_photos, write_split
from tasks.common.coco import read_coco_json, read_coco_json_without_segmentation


def without_segmentation(document: dict[str, Any]) -> dict[str, Any]:
    for annotation in document["annotations"]:
        if "segmentation" in annotation:
            annotation["segmentation"] = None
    return document


def annotation(index: int, segmentation: Any) -> dict[str, Any]:
    return {"id": index, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "segmentation": segmentation}


EVERY_FORM = [
    [[10.5, 20, 30, 40, 50.25, 60]],  # polygons
    [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]],
    [],  # CVAT's empty list
    {"size": [24, 32], "counts": "PPYo0"},  # compressed RLE
    {"size": [24, 32], "counts": [0, 5, 10, 759]},  # uncompressed RLE
]


@pytest.mark.parametrize("indent", [None, 2])
def test_every_segmentation_form_is_null_and_nothing_else_changes(tmp_path: Path, indent: int | None) -> None:
    document = {
        "info": {"description": 'a "segmentation": [1, 2] in a string, and [brackets] {braces}'},
        "images": [{"id": 1, "file_name": "segmentation [1].jpg", "width": 32, "height": 24}],
        "annotations": [annotation(i, form) for i, form in enumerate(EVERY_FORM, start=1)],
        "categories": [{"id": 1, "name": "segmentation"}],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(document, indent=indent))
    assert read_coco_json_without_segmentation(path) == without_segmentation(json.loads(path.read_text()))


def test_a_generated_train2017_like_file_reads_the_same_boxes(tmp_path: Path) -> None:
    photos = write_photos(tmp_path / "photos")
    write_split(tmp_path / "coco", "train", 300, 2100, photos, seed=0)
    path = tmp_path / "coco" / "annotations" / "instances_train.json"
    whole = read_coco_json(path)
    assert sum(len(a["segmentation"][0]) for a in whole["annotations"]) > 20 * 2100
    assert read_coco_json_without_segmentation(path) == without_segmentation(whole)


def test_a_value_the_pattern_does_not_fit_is_kept(tmp_path: Path) -> None:
    deep = [[[1, 2], [3, 4]]]  # not COCO, but left as it is rather than broken
    long_then_deep = [*range(200_000), [[3]]]  # would backtrack exponentially under a nested repeat
    document = {"images": [], "annotations": [annotation(1, deep), annotation(2, long_then_deep)], "categories": []}
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(document))
    assert read_coco_json_without_segmentation(path) == document  # in linear time: a nested repeat never returns


def test_broken_json_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "instances.json"
    path.write_text('{"images": [], "annotations": [{"segmentation": [[1, 2]]}')
    with pytest.raises(ValueError, match=f"{path}.*not valid JSON"):
        read_coco_json_without_segmentation(path)
