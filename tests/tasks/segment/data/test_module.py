"""Segmentation data: the item and batch contract, VOC and COCO readers, training crops, bad input."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from torch.utils.data import DataLoader

from deploy.run.drawing import voc_palette
from tasks.common.categories import VOC_CLASS_NAMES
from tasks.common.images import UnreadableImageError, load_rgb
from tasks.segment.data.coco_masks import coco_semantic_mask
from tasks.segment.data.formats.coco import CocoSegmentation
from tasks.segment.data.formats.voc import VocSegmentation
from tasks.segment.data.masks import COCO_VOC_CATEGORY_IDS, InvalidMaskError, MissingMaskError, load_mask
from tasks.segment.data.module import SegmentationDataModule, collate_segmentation
from tasks.segment.data.transforms import IGNORE_INDEX, SegmentationEvalTransform, SegmentationTrainTransform
from tests.tasks.segment.fixtures import write_coco_segmentation, write_voc_segmentation

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def voc_module(root: Path, **kwargs: object) -> SegmentationDataModule:
    options: dict[str, object] = {"crop_size": 48, "base_size": 48, "batch_size": 2, "num_workers": 0}
    options.update(kwargs)
    return SegmentationDataModule(format="voc", root=str(root), **options)  # type: ignore[arg-type]


def assert_valid_mask(mask: torch.Tensor, num_classes: int) -> None:
    assert mask.dtype == torch.int64
    values = set(mask.unique().tolist())
    assert values <= set(range(num_classes)) | {IGNORE_INDEX}, values


def denormalise(image: torch.Tensor) -> np.ndarray:
    """[3, H, W] normalised -> [H, W, 3] in 0-255 units."""
    mean, std = torch.tensor(MEAN)[:, None, None], torch.tensor(STD)[:, None, None]
    return ((image * std + mean) * 255).permute(1, 2, 0).numpy()


# -- what the model reads before setup -----------------------------------------------------------------------------
@pytest.mark.parametrize(("format", "classes"), [("synthetic", 5), ("voc", 21), ("coco", 21)])
def test_class_info_needs_no_setup_and_no_disk(tmp_path: Path, format: str, classes: int) -> None:
    root = None if format == "synthetic" else str(tmp_path / "not-there")
    data = SegmentationDataModule(format=format, root=root, cache_dir=str(tmp_path / "cache"))  # type: ignore[arg-type]
    assert data.num_classes == classes == len(data.class_names)
    assert data.class_names[0] == "background" and data.ignore_index == IGNORE_INDEX == 255
    if format != "synthetic":
        assert data.class_names == VOC_CLASS_NAMES
    assert not (tmp_path / "cache").exists()  # nothing generated or read


def test_invalid_arguments_name_the_argument(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="format='cityscapes'.*valid formats"):
        SegmentationDataModule(format="cityscapes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs root"):
        SegmentationDataModule(format="voc")
    with pytest.raises(ValueError, match="takes no root"):
        SegmentationDataModule(root=str(tmp_path))
    with pytest.raises(ValueError, match="extra_train_split is for format='voc'"):
        SegmentationDataModule(format="coco", root=str(tmp_path), extra_train_split="train_aug")
    with pytest.raises(ValueError, match="scale_range"):
        SegmentationDataModule(scale_range=(2.0, 1.0))
    with pytest.raises(ValueError, match="crop_size"):
        SegmentationDataModule(crop_size=0)


# -- VOC items, loaders, collate -----------------------------------------------------------------------------------
def test_voc_items_and_batches_follow_the_contract(tmp_path: Path) -> None:
    data = voc_module(write_voc_segmentation(tmp_path, num_images=6, image_size=64))
    data.setup("fit")
    assert isinstance(data.train_dataset, VocSegmentation) and len(data.train_dataset) == 3
    image, mask = data.train_dataset[0]
    assert image.shape == (3, 48, 48) and image.dtype == torch.float32 and mask.shape == (48, 48)
    assert_valid_mask(mask, 21)
    image, mask = data.val_dataset[0]  # type: ignore[index]
    assert image.shape == (3, 48, 64) and mask.shape == (48, 64)  # the original size, not the crop
    assert_valid_mask(mask, 21)
    images, masks = next(iter(data.train_dataloader()))
    assert images.shape == (2, 3, 48, 48) and masks.shape == (2, 48, 48) and masks.dtype == torch.int64
    assert len(data.train_dataloader()) == 1  # 3 images, batch 2, drop_last
    images, masks = next(iter(data.val_dataloader()))
    assert images.shape == (1, 3, 48, 64) and masks.shape == (1, 48, 64)
    data.setup("test")
    assert data.test_dataset is not None and data.test_dataset.split == "val"


def test_val_items_are_the_palette_indices_and_the_normalised_image(tmp_path: Path) -> None:
    year = write_voc_segmentation(tmp_path, num_images=4, image_size=64) / "VOC2012"
    dataset = VocSegmentation(year, "val", SegmentationEvalTransform(MEAN, STD))
    stem = "2012_000001"
    assert dataset.samples[0] == (year / "JPEGImages" / f"{stem}.jpg", year / "SegmentationClass" / f"{stem}.png")
    image, mask = dataset[0]
    with Image.open(year / "SegmentationClass" / f"{stem}.png") as png:
        assert png.mode == "P" and png.getpalette()[: 3 * 3] == [0, 0, 0, 128, 0, 0, 0, 128, 0]
        indices = np.array(png)
    assert np.array_equal(mask.numpy(), indices)  # indices, not the palette colours
    assert IGNORE_INDEX in indices and 0 in indices
    assert np.allclose(denormalise(image), load_rgb(year / "JPEGImages" / f"{stem}.jpg"), atol=1e-3)


def test_voc_palette_is_the_devkit_colour_map() -> None:
    palette = np.array(voc_palette()).reshape(256, 3)
    assert palette[:4].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
    assert palette[15].tolist() == [192, 128, 128] and palette[255].tolist() == [224, 224, 192]


def test_voc_root_forms_and_missing_split(tmp_path: Path) -> None:
    devkit = write_voc_segmentation(tmp_path, num_images=4, image_size=64)
    transform = SegmentationEvalTransform(MEAN, STD)
    assert len(VocSegmentation(devkit, "trainval", transform)) == 4  # VOCdevkit folder -> VOC2012
    assert len(VocSegmentation(devkit / "VOC2012", "train", transform)) == 2  # the year folder itself
    with pytest.raises(FileNotFoundError, match=r"test\.txt not found; splits there: \['train', 'train_aug'"):
        VocSegmentation(devkit, "test", transform)
    with pytest.raises(FileNotFoundError, match="VOC segmentation data not found under"):
        VocSegmentation(tmp_path / "VOC2012" / "JPEGImages", "train", transform)


def test_extra_train_split_joins_the_aug_list_without_val_images(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = write_voc_segmentation(tmp_path, num_images=4, image_size=64)
    year = root / "VOC2012"
    data = voc_module(root, extra_train_split="train_aug")
    with caplog.at_level(logging.INFO, logger="tasks.segment.data.formats.voc"):
        data.setup("fit")
    dataset = data.train_dataset
    assert isinstance(dataset, VocSegmentation)
    # train = 2012_000000, 2012_000002 (their own SegmentationClass masks), + 2 aug images; val 2012_000001 left out
    assert [mask.relative_to(year).as_posix() for _, mask in dataset.samples] == [
        "SegmentationClass/2012_000000.png",
        "SegmentationClass/2012_000002.png",
        "SegmentationClassAug/aug_000000.png",
        "SegmentationClassAug/aug_000001.png",
    ]
    assert dataset.excluded_extra == 1 and "1 left out as validation images" in caplog.text
    for index in range(len(dataset)):
        assert dataset[index][1].shape == (48, 48)
    # Without SegmentationClassAug/ the extra list's masks come from SegmentationClass/.
    shutil.rmtree(year / "SegmentationClassAug")
    (year / "ImageSets" / "Segmentation" / "extra.txt").write_text("2012_000003\n")
    plain = VocSegmentation(root, "train", SegmentationEvalTransform(MEAN, STD), extra_split="extra")
    assert plain.samples[-1][1] == year / "SegmentationClass" / "2012_000003.png"


def test_grayscale_image_loads_as_rgb(tmp_path: Path) -> None:
    year = write_voc_segmentation(tmp_path, num_images=2, image_size=64) / "VOC2012"
    path = year / "JPEGImages" / "2012_000000.jpg"
    Image.open(path).convert("L").save(path)
    image, mask = VocSegmentation(year, "train", SegmentationEvalTransform(MEAN, STD))[0]
    assert image.shape == (3, 48, 64) and mask.shape == (48, 64)
    pixels = denormalise(image)
    assert np.allclose(pixels[..., 0], pixels[..., 1], atol=1e-3) and np.allclose(pixels[..., 1], pixels[..., 2])


# -- training transform ------------------------------------------------------------------------------------------
def test_crop_larger_than_the_scaled_image_is_padded_with_ignore() -> None:
    transform = SegmentationTrainTransform(crop_size=64, base_size=16, scale_range=(1.0, 1.0), mean=MEAN, std=STD)
    image = np.full((24, 32, 3), 200, dtype=np.uint8)
    mask = np.ones((24, 32), dtype=np.uint8)
    for seed in range(3):
        transform.set_random_seed(seed)
        out_image, out_mask = transform(image, mask)
        assert out_image.shape == (3, 64, 64) and out_mask.shape == (64, 64) and out_mask.dtype == torch.int64
        # shorter side 24 -> 16, so 16 x 21 pixels of class 1 (aspect kept); everything else is padding
        assert int((out_mask == 1).sum()) == 16 * 21 and int((out_mask == IGNORE_INDEX).sum()) == 64 * 64 - 16 * 21
        padding = out_mask == IGNORE_INDEX
        assert torch.allclose(out_image[:, padding], torch.zeros(1), atol=0.02)  # mean fill = 0 once normalised
        assert (out_image[:, ~padding] > 1.0).all()


def test_training_scale_draws_within_scale_range() -> None:
    transform = SegmentationTrainTransform(crop_size=8, base_size=20, scale_range=(0.5, 2.0), mean=MEAN, std=STD)
    transform.set_random_seed(0)
    sides = set()
    image, mask = np.zeros((30, 60, 3), dtype=np.uint8), np.zeros((30, 60), dtype=np.uint8)
    for _ in range(40):
        out = transform.compose.transforms[0](image=image, mask=mask)  # the scale step alone
        assert out["image"].shape[1] == 2 * out["image"].shape[0] and out["mask"].shape == out["image"].shape[:2]
        sides.add(out["image"].shape[0])
    assert min(sides) >= 10 and max(sides) <= 40 and len(sides) > 10


def test_collate_pads_different_sizes_with_ignore() -> None:
    small = (torch.ones(3, 2, 3), torch.full((2, 3), 4, dtype=torch.int64))
    large = (torch.ones(3, 4, 2), torch.full((4, 2), 7, dtype=torch.int64))
    images, masks = collate_segmentation([small, large])
    assert images.shape == (2, 3, 4, 3) and masks.shape == (2, 4, 3)
    assert (masks[0, :2, :3] == 4).all() and (masks[0, 2:] == IGNORE_INDEX).all()
    assert (masks[1, :, :2] == 7).all() and (masks[1, :, 2] == IGNORE_INDEX).all()
    assert images[0, :, 2:].abs().sum() == 0 and images[1, :, :, 2].abs().sum() == 0
    metas = [{"path": "a.jpg", "orig_size": (2, 3)}]
    images, collated = collate_segmentation([(small[0], metas[0])])
    assert images.shape == (1, 3, 2, 3) and collated == metas


def test_predict_items_keep_the_original_size(tmp_path: Path) -> None:
    folder = write_voc_segmentation(tmp_path, num_images=2, image_size=64) / "VOC2012" / "JPEGImages"
    data = SegmentationDataModule(predict_root=str(folder), num_workers=0, cache_dir=str(tmp_path / "cache"))
    data.setup("predict")
    images, metas = next(iter(data.predict_dataloader()))
    assert images.shape == (1, 3, 48, 64)
    assert metas == [{"path": str(folder / "2012_000000.jpg"), "orig_size": (48, 64)}]


# -- COCO ----------------------------------------------------------------------------------------------------------
def polygon(x1: int, y1: int, x2: int, y2: int) -> list[list[int]]:
    """A rectangle polygon; pycocotools fills columns x1..x2-1 and rows y1..y2-1."""
    return [[x1, y1, x2, y1, x2, y2, x1, y2]]


def test_coco_polygons_and_rle_to_semantic_mask_by_hand() -> None:
    height, width = 6, 8
    mapping = {cid: label for label, cid in enumerate(COCO_VOC_CATEGORY_IDS) if label}
    person, car, cat, stop_sign = 1, 3, 17, 13  # VOC labels 15, 7, 8; stop sign is not a VOC class
    # Uncompressed RLE is column-major: 7 zeros, then column 1 rows 1..3, 3 zeros, column 2 rows 1..3.
    rle = {"size": [height, width], "counts": [7, 3, 3, 3, 32]}
    compressed = mask_utils.encode(np.asfortranarray(np.pad(np.ones((1, 2), np.uint8), ((5, 0), (6, 0)))))
    annotations = [
        {"id": 1, "category_id": person, "segmentation": polygon(4, 0, 7, 2)},
        {"id": 2, "category_id": car, "segmentation": rle, "iscrowd": 1},
        {"id": 3, "category_id": stop_sign, "segmentation": polygon(0, 4, 3, 6)},
        {"id": 4, "category_id": cat, "segmentation": polygon(2, 2, 4, 4)},  # overlaps the car at (2, 2), (2, 3)
        {"id": 5, "category_id": person, "segmentation": {**compressed, "counts": compressed["counts"].decode()}},
    ]
    expected = np.zeros((height, width), dtype=np.uint8)
    expected[0:2, 4:7] = 15  # person polygon
    expected[1:4, 1:3] = 7  # car RLE
    expected[2:4, 2:4] = 8  # cat polygon ...
    expected[2:4, 2] = IGNORE_INDEX  # ... where it overlaps the car: 255, as the reference does
    expected[5, 6:8] = 15  # person, compressed RLE
    assert np.array_equal(coco_semantic_mask(annotations, height, width, mapping), expected)
    # Overlapping instances of the same class are ignore too (the reference's masks.sum(0) > 1).
    same = [{"id": 1, "category_id": cat, "segmentation": polygon(0, 0, 3, 3)}, {"id": 2, **annotations[3]}]
    result = coco_semantic_mask(same, height, width, mapping)
    assert result[2, 2] == IGNORE_INDEX and result[0, 0] == 8 and result[3, 3] == 8
    assert not coco_semantic_mask(annotations[2:3], height, width, mapping).any()  # non-VOC only: background
    with pytest.raises(InvalidMaskError, match="file.json.*annotation 9 has an unreadable 'segmentation'"):
        coco_semantic_mask([{"id": 9, "category_id": cat, "segmentation": 5}], height, width, mapping, "file.json")


def test_coco_data_module_removes_training_images_without_voc_pixels(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = write_coco_segmentation(tmp_path, num_images=4, image_size=64)
    data = SegmentationDataModule(format="coco", root=str(root), crop_size=32, base_size=32, num_workers=0)
    with caplog.at_level(logging.INFO, logger="tasks.segment.data.formats.coco"):
        data.setup("fit")
    train, val = data.train_dataset, data.val_dataset
    assert isinstance(train, CocoSegmentation) and isinstance(val, CocoSegmentation)
    assert train.removed_images == 1 and train.image_ids == [1, 2, 3] and "left out 1 of 4 images" in caplog.text
    assert val.removed_images == 0 and len(val) == 4
    image, mask = train[0]
    assert image.shape == (3, 32, 32) and mask.shape == (32, 32)
    assert_valid_mask(mask, 21)
    document = json.loads((root / "annotations" / "instances_val.json").read_text())
    mapping = {cid: label for label, cid in enumerate(COCO_VOC_CATEGORY_IDS) if label}
    for index, image_id in enumerate(val.image_ids):
        image, mask = val[index]
        assert image.shape == (3, 48, 64)
        annotations = [a for a in document["annotations"] if a["image_id"] == image_id]
        assert np.array_equal(mask.numpy(), coco_semantic_mask(annotations, 48, 64, mapping))
        assert mask[0, 0] in (0, IGNORE_INDEX) or mask[0, 0] == mapping.get(annotations[0]["category_id"])
    assert any(val[i][1].max() > 0 for i in range(len(val)))


# -- bad input ----------------------------------------------------------------------------------------------------
def _break_mask_size(year: Path) -> tuple[type[Exception], str]:
    Image.new("P", (10, 10)).save(year / "SegmentationClass" / "2012_000002.png")
    return InvalidMaskError, r"mask .*2012_000002\.png is 10x10 .* image .*2012_000002\.jpg is 64x48"


def _break_mask_labels(year: Path) -> tuple[type[Exception], str]:
    path = year / "SegmentationClass" / "2012_000002.png"
    mask = np.array(Image.open(path))
    mask[0, :3] = [21, 99, 254]
    Image.fromarray(mask, mode="L").save(path)
    return InvalidMaskError, r"mask .*2012_000002\.png has labels \[21, 99, 254\] outside 0\.\.20"


def _remove_mask(year: Path) -> tuple[type[Exception], str]:
    (year / "SegmentationClass" / "2012_000002.png").unlink()
    return MissingMaskError, r"2012_000002\.png not found"


def _corrupt_image(year: Path) -> tuple[type[Exception], str]:
    (year / "JPEGImages" / "2012_000002.jpg").write_bytes(b"not a jpeg")
    return UnreadableImageError, r"cannot read image .*2012_000002\.jpg"


BREAKERS = [_break_mask_size, _break_mask_labels, _remove_mask, _corrupt_image]


@pytest.mark.parametrize("breaker", BREAKERS, ids=lambda f: f.__name__.lstrip("_"))
def test_bad_sample_is_an_error_naming_the_file(tmp_path: Path, breaker: object) -> None:
    root = write_voc_segmentation(tmp_path, num_images=4, image_size=64)
    error, pattern = breaker(root / "VOC2012")  # type: ignore[operator]
    data = voc_module(root)
    with pytest.raises(error, match=pattern):
        data.setup("fit")  # missing files fail here, before training
        for index in range(len(data.train_dataset)):  # type: ignore[arg-type]
            data.train_dataset[index]  # type: ignore[index]


@pytest.mark.parametrize("breaker", BREAKERS, ids=lambda f: f.__name__.lstrip("_"))
def test_bad_sample_is_a_counted_logged_skip(tmp_path: Path, breaker: object, caplog: pytest.LogCaptureFixture) -> None:
    root = write_voc_segmentation(tmp_path, num_images=4, image_size=64)
    breaker(root / "VOC2012")  # type: ignore[operator]
    data = voc_module(root, skip_bad_samples=True)
    data.setup("fit")
    dataset = data.train_dataset
    assert dataset is not None and len(dataset) == 2 and dataset.skipped_images == 0
    with caplog.at_level(logging.WARNING):
        items = [dataset[i] for i in range(len(dataset))] + [dataset[1]]
    assert dataset.skipped_images == 2  # every event counts; the warning names the file once
    assert caplog.text.count("skipping bad sample") == 1 and "2012_000002" in caplog.text
    for image, mask in items:
        assert image.shape == (3, 48, 48) and mask.shape == (48, 48)


def test_skips_in_dataloader_workers_are_counted(tmp_path: Path) -> None:
    root = write_voc_segmentation(tmp_path, num_images=4, image_size=64)
    _remove_mask(root / "VOC2012")
    data = voc_module(root, skip_bad_samples=True)
    data.setup("validate")  # val = 2012_000001, 2012_000003: break one of them too
    (root / "VOC2012" / "SegmentationClass" / "2012_000003.png").unlink()
    dataset = data.val_dataset
    assert dataset is not None
    batches = list(DataLoader(dataset, batch_size=1, num_workers=1, collate_fn=collate_segmentation))
    assert len(batches) == 2  # the evaluation does not shrink: the count tells how many were substituted
    assert dataset.skipped_images == 1


def test_coco_image_size_mismatch_names_both_files(tmp_path: Path) -> None:
    root = write_coco_segmentation(tmp_path, num_images=2, image_size=64)
    Image.new("RGB", (20, 10)).save(root / "val" / "val_0002.jpg")
    transform = SegmentationEvalTransform(MEAN, STD)
    with pytest.raises(
        InvalidMaskError, match=r"val_0002\.jpg is 20x10 .*instances_val\.json \(image id 2\) says 64x48"
    ):
        CocoSegmentation(root, "val", transform)[1]
    skipping = CocoSegmentation(root, "val", transform, skip_bad_samples=True)
    assert skipping[1][0].shape == (3, 48, 64) and skipping.skipped_images == 1


def test_load_mask_rejects_colour_masks(tmp_path: Path) -> None:
    Image.new("RGB", (4, 4), (128, 0, 0)).save(tmp_path / "colour.png")
    with pytest.raises(InvalidMaskError, match=r"colour\.png has PIL mode 'RGB'.*palette \('P'\) or grayscale"):
        load_mask(tmp_path / "colour.png")
