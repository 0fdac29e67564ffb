"""The shared COCO layout discovery (tasks/common/coco_layout.py) and the seeded held-out split: what both the
detection and the segmentation "coco" formats read through."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tasks.common.coco_layout import json_files_under
from tasks.common.splits import validation_mask
from tasks.segment.data.module import SegmentationDataModule
from tests.tasks.detect.data.layouts import cvat_single, roboflow


def test_validation_mask_is_seeded_and_keeps_both_parts() -> None:
    mask = validation_mask(50, 0.1, "data")
    assert mask.sum() == 5 and np.array_equal(mask, validation_mask(50, 0.1, "data"))
    assert validation_mask(3, 0.01, "data").sum() == 1 and validation_mask(3, 0.99, "data").sum() == 2
    with pytest.raises(ValueError, match="data has 1 image"):
        validation_mask(1, 0.1, "data")


def test_json_files_are_listed_a_few_levels_deep_and_capped(tmp_path: Path) -> None:
    for index in range(12):
        (tmp_path / "a" / f"{index:02d}.json").parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "a" / f"{index:02d}.json").write_text("{}")
    for name in ("b/c/kept.json", "b/c/d/too_deep.json", ".hidden/x.json", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}")
    shown, total = json_files_under(tmp_path)
    assert total == 13 and shown == [f"a/{index:02d}.json" for index in range(10)]
    assert json_files_under(tmp_path / "b")[0] == ["c/d/too_deep.json", "c/kept.json"]  # sorted as text


def test_segmentation_reads_the_same_layouts(tmp_path: Path) -> None:
    files = roboflow(tmp_path / "roboflow")
    settings = {"format": "coco", "num_workers": 0, "cache_dir": str(tmp_path / "cache")}
    data = SegmentationDataModule(root=str(tmp_path / "roboflow"), **settings)
    data.setup("validate")
    assert data.val_dataset.annotation_file == files["val"] and len(data.val_dataset) == 4
    cvat_single(tmp_path / "cvat", num_images=6)
    single = SegmentationDataModule(root=str(tmp_path / "cvat"), **settings)
    single.setup("validate")
    assert len(single.val_dataset) == 1 and single.val_dataset.held_out.train_count == 5
    assert single.val_dataset.image_folder == tmp_path / "cvat" / "images"
