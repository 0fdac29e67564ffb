"""DetectionDataModule: class info before setup, loaders, eval hooks, predict, argument errors, worker skips."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from tasks.detect.data.module import DetectionDataModule
from tasks.detect.data.synthetic import synthetic_dataset_name
from tests.tasks.detect.fixtures import write_coco_dataset, write_voc_dataset

SMALL = {"image_size": 64, "batch_size": 2, "num_workers": 0}


def test_synthetic_class_info_before_setup_then_loaders(tmp_path: Path) -> None:
    data = DetectionDataModule(
        synthetic_train_images=5, synthetic_val_images=3, synthetic_image_size=64, cache_dir=str(tmp_path), **SMALL
    )
    assert not (tmp_path / synthetic_dataset_name(5, 3, 64, 0)).exists()
    assert data.num_classes == 5
    assert data.class_names == ["background", "circle", "square", "triangle", "cross"]
    assert (tmp_path / synthetic_dataset_name(5, 3, 64, 0)).is_dir()  # generated on first access
    data.setup("fit")
    images, targets = next(iter(data.train_dataloader()))
    assert images.shape == (2, 3, 64, 64) and len(targets) == 2
    assert len(data.train_dataloader()) == 2  # 5 images, batch 2, drop_last
    assert [t["image_id"] for _, ts in data.val_dataloader() for t in ts] == [1, 2, 3]  # in order, all kept
    assert data.val_dataset is not None and data.val_dataset.label_to_category_id == {1: 1, 2: 2, 3: 3, 4: 4}
    assert sorted(data.val_dataset.coco_gt.getImgIds()) == [1, 2, 3]


def test_coco_module_uses_val_for_test_and_letterboxes(tmp_path: Path) -> None:
    root = write_coco_dataset(tmp_path / "coco", num_images=3, image_size=96)
    data = DetectionDataModule(format="coco", root=str(root), keep_aspect_ratio=True, **SMALL)
    assert data.num_classes == 4 and data.class_names[1:] == ["cat1", "cat5", "cat90"]
    data.setup("test")
    assert data.test_dataset is not None and data.test_dataset.split == "val"
    _, targets = next(iter(data.test_dataloader()))
    assert targets[0]["scale"].tolist() == [1.5, 1.5]  # 96 / 64 on both axes
    loader = data.test_dataloader()
    assert loader.collate_fn is not None and not loader.drop_last and loader.persistent_workers is False


def test_voc_module_joins_splits(tmp_path: Path) -> None:
    root = write_voc_dataset(tmp_path / "VOCdevkit", num_images=2, years=("VOC2007", "VOC2012"))
    data = DetectionDataModule(
        format="voc",
        root=str(root),
        train_split="VOC2007/trainval+VOC2012/trainval",
        val_split="VOC2007/test",
        augment="ssd",
        **SMALL,
    )
    assert data.num_classes == 21 and data.class_names[15] == "person"
    data.setup("fit")
    assert data.train_dataset is not None and len(data.train_dataset) == 4
    assert data.val_dataset is not None and len(data.val_dataset.voc_ground_truth()) == 2
    images, _ = next(iter(data.train_dataloader()))
    assert images.shape == (2, 3, 64, 64)


def test_predict_items_carry_path_size_and_scale(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("L", (80, 40), 90).save(folder / "a.png")
    Image.new("RGBA", (32, 64), (1, 2, 3, 4)).save(folder / "b.png")
    data = DetectionDataModule(predict_root=str(folder), cache_dir=str(tmp_path / "cache"), **SMALL)
    data.setup("predict")
    images, metas = next(iter(data.predict_dataloader()))
    assert images.shape == (2, 3, 64, 64)
    assert [Path(m["path"]).name for m in metas] == ["a.png", "b.png"]
    assert metas[0]["orig_size"].tolist() == [40, 80] and metas[1]["orig_size"].tolist() == [64, 32]
    torch.testing.assert_close(metas[0]["scale"], torch.tensor([80 / 64, 40 / 64]))


def test_corrupt_images_are_counted_across_workers(tmp_path: Path) -> None:
    root = write_coco_dataset(tmp_path / "coco", num_images=4, image_size=64, splits=("val",))
    (root / "val" / "val_0003.jpg").write_bytes(b"garbage")
    data = DetectionDataModule(
        format="coco", root=str(root), image_size=64, batch_size=2, num_workers=2, skip_bad_samples=True
    )
    data.setup("validate")
    for _ in range(2):  # two epochs: each skip counts
        ids = sorted(t["image_id"] for _, targets in data.val_dataloader() for t in targets)
        assert ids == [1, 2, 4, 4]
    assert data.val_dataset is not None and data.val_dataset.skipped_images == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"format": "synthetic", "root": "/data"}, "takes no root"),
        ({"format": "coco"}, "needs root"),
        ({"val_split": "test"}, "'train' and 'val' only"),
        ({"format": "yolo", "root": "/data"}, "valid formats"),
        ({"augment": "mosaic"}, "valid values"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_invalid_arguments_say_what_is_valid(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DetectionDataModule(**kwargs)


def test_predict_without_root_and_loader_before_setup(tmp_path: Path) -> None:
    data = DetectionDataModule(format="coco", root=str(tmp_path), **SMALL)
    with pytest.raises(ValueError, match="predict_root"):
        data.setup("predict")
    with pytest.raises(RuntimeError, match="setup"):
        data.val_dataloader()
    with pytest.raises(FileNotFoundError, match=r"no COCO dataset layout found under .*instances_\{val,"):
        _ = data.num_classes
