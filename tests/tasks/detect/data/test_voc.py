"""VOC reader: difficult objects, 1-based coordinates, 07+12 split joining, in-memory COCO ground truth, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tasks.common.categories import VOC_CLASSES
from tasks.detect.data.formats.voc import VocDetection, parse_voc_xml
from tasks.detect.data.transforms import DetectionTransform
from tests.tasks.detect.fixtures import write_voc_dataset

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _dataset(root: Path, split: str) -> VocDetection:
    return VocDetection(root, split, DetectionTransform(64, MEAN, STD))


@pytest.fixture(scope="module")
def devkit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_voc_dataset(tmp_path_factory.mktemp("voc") / "VOCdevkit", num_images=4, years=("VOC2007", "VOC2012"))


def test_difficult_objects_are_ignored_in_training_and_evaluation(devkit: Path) -> None:
    dataset = _dataset(devkit / "VOC2007", "trainval")
    _, _, boxes, labels, difficult = parse_voc_xml(devkit / "VOC2007" / "Annotations" / "2007_000000.xml")
    assert difficult.tolist()[-1] is True and difficult.sum() == 1
    _, target = dataset[0]
    assert len(target["labels"]) == len(labels) - 1
    assert VOC_CLASSES.index("person") + 1 not in target["labels"].tolist()
    gt_boxes, gt_labels, gt_difficult = dataset.voc_ground_truth()[1]
    assert gt_difficult.tolist() == difficult.tolist()
    np.testing.assert_allclose(gt_boxes[gt_difficult], [[2, 2, 12, 14]])  # xmin-1, ymin-1, xmax, ymax
    crowd = [a for a in dataset.coco_gt.loadAnns(dataset.coco_gt.getAnnIds(imgIds=[1])) if a["iscrowd"]]
    assert len(crowd) == 1 and crowd[0]["category_id"] == VOC_CLASSES.index("person") + 1
    assert crowd[0]["bbox"] == [2.0, 2.0, 10.0, 12.0]


def test_boxes_scale_back_to_the_xml(devkit: Path) -> None:
    dataset = _dataset(devkit / "VOC2007", "trainval")
    ground_truth = dataset.voc_ground_truth()
    for index in range(len(dataset)):
        _, target = dataset[index]
        boxes, _, difficult = ground_truth[target["image_id"]]
        torch.testing.assert_close(
            target["boxes"] * target["scale"].repeat(2), torch.tensor(boxes[~difficult]).float(), atol=1.0, rtol=0
        )
    assert dataset.label_to_category_id == {label: label for label in range(1, 21)}
    assert dataset.class_names[0] == "background" and dataset.class_names[1:] == list(VOC_CLASSES)


def test_07_plus_12_splits_join_in_order(devkit: Path) -> None:
    joined = _dataset(devkit, "VOC2007/trainval+VOC2012/trainval")
    assert len(joined) == 8
    assert [r.image_id for r in joined.records] == list(range(1, 9))
    assert [r.path.parent.parent.name for r in joined.records] == ["VOC2007"] * 4 + ["VOC2012"] * 4
    assert sorted(joined.coco_gt.getImgIds()) == list(range(1, 9))
    halves = _dataset(devkit, "VOC2007/train+VOC2007/val")
    assert [r.path.stem for r in halves.records] == ["2007_000000", "2007_000002", "2007_000001", "2007_000003"]


def test_split_errors_name_the_path_and_valid_choices(devkit: Path) -> None:
    with pytest.raises(FileNotFoundError, match="VOC2007/trainval"):
        _dataset(devkit, "trainval")  # a VOCdevkit root needs the year in the split
    with pytest.raises(FileNotFoundError, match=r"nosuch\.txt.*trainval"):
        _dataset(devkit / "VOC2007", "nosuch")
    with pytest.raises(FileNotFoundError, match="VOC2010"):
        _dataset(devkit, "VOC2010/trainval")


def test_unknown_class_names_the_file(tmp_path: Path) -> None:
    root = write_voc_dataset(tmp_path / "VOCdevkit", num_images=2)
    xml = root / "VOC2007" / "Annotations" / "2007_000001.xml"
    xml.write_text(xml.read_text().replace("<name>", "<name>unicorn", 1))
    with pytest.raises(ValueError, match=r"2007_000001\.xml.*unicorn"):
        _dataset(root / "VOC2007", "trainval")
