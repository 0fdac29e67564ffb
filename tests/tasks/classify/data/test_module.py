"""Classification data: the ImageNet-layout reader, label mapping across splits, bad input, transforms, synthetic."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from tasks.classify.data.formats.imagefolder import ImageFolderClassification
from tasks.classify.data.module import ClassificationDataModule
from tasks.classify.data.synthetic import (
    CLASS_SPECS,
    CLASSIFICATION_CLASS_NAMES,
    COLOUR_FAMILIES,
    EXTENT_RANGE,
    draw_classification_image,
    ensure_synthetic_classification,
)
from tasks.classify.data.transforms import ClassificationEvalTransform, ClassificationTrainTransform, eval_resize_side
from tasks.common.images import UnreadableImageError
from tests.tasks.classify.fixtures import (
    MEAN,
    STD,
    class_colour,
    image_class,
    write_corrupt_image,
    write_flat_split,
    write_image,
    write_image_folder,
)

SYNSETS = ("n01440764", "n01443537", "n01484850")


def folder_module(root: Path, **kwargs: object) -> ClassificationDataModule:
    options: dict[str, object] = {"resolution": 32, "batch_size": 2, "eval_batch_size": 4, "num_workers": 0}
    options.update(kwargs)
    return ClassificationDataModule(format="imagefolder", root=str(root), **options)  # type: ignore[arg-type]


def assert_labels_match_content(dataset: ImageFolderClassification) -> list[int]:
    """Every item's label is the class its pixels show (fixture colours), so no mapping can be shifted."""
    labels = []
    for index in range(len(dataset)):
        image, label = dataset[index]
        assert image_class(image, dataset.class_names) == dataset.class_names[label]
        labels.append(int(label))
    return labels


# -- class names before setup ----------------------------------------------------------------------------------------
def test_class_names_right_after_construction(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "data", {"train": {SYNSETS[2]: 1, SYNSETS[0]: 1, SYNSETS[1]: 1}})
    (root / "train" / ".cache").mkdir()  # hidden folders are not classes
    data = folder_module(root)
    assert data.class_names == sorted(SYNSETS)
    assert data.num_classes == 3

    synthetic = ClassificationDataModule(cache_dir=str(tmp_path / "cache"))
    assert synthetic.class_names == list(CLASSIFICATION_CLASS_NAMES) == sorted(CLASSIFICATION_CLASS_NAMES)
    assert synthetic.num_classes == 8
    assert not (tmp_path / "cache").exists()  # no generation just for the class names


# -- items, batches and the label mapping ----------------------------------------------------------------------------
def test_imagefolder_items_batches_and_stable_mapping(tmp_path: Path) -> None:
    # val lacks the first class, so a mapping built from val's own folders would shift every label by one.
    root = write_image_folder(
        tmp_path, {"train": {"ant": 2, "bee": 2, "cat": 3}, "val": {"bee": 1, "cat": 2}}, size=40, nested=True
    )
    data = folder_module(root)
    data.setup("fit")
    assert data.train_dataset is not None and data.val_dataset is not None
    assert len(data.train_dataset) == 7  # nested <class>/extra/deeper/ images included
    assert data.val_dataset.class_names == data.train_dataset.class_names == ["ant", "bee", "cat"]
    assert assert_labels_match_content(data.train_dataset) == [0, 0, 1, 1, 2, 2, 2]
    assert assert_labels_match_content(data.val_dataset) == [1, 2, 2]
    assert data.val_dataset.class_counts() == {"ant": 0, "bee": 1, "cat": 2}

    images, labels = next(iter(data.train_dataloader()))
    assert images.shape == (2, 3, 32, 32) and images.dtype == torch.float32
    assert labels.dtype == torch.int64 and labels.shape == (2,)
    images, labels = next(iter(data.val_dataloader()))
    assert images.shape == (3, 3, 32, 32)
    assert labels.tolist() == [1, 2, 2]
    data.setup("test")
    assert data.test_dataset is not None and data.test_dataset.targets == [1, 2, 2]  # test defaults to val
    datasets = (data.train_dataset, data.val_dataset, data.test_dataset)
    assert [dataset.skipped_images for dataset in datasets] == [0, 0, 0]


def test_test_split_uses_the_train_mapping(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path, {"train": {"ant": 1, "bee": 1}, "val": {"ant": 1}, "holdout": {"bee": 2}})
    data = folder_module(root, test_split="holdout")
    data.setup("test")
    assert data.test_dataset is not None
    assert assert_labels_match_content(data.test_dataset) == [1, 1]


@pytest.mark.parametrize("resolution", [24, 48])
def test_resolution_sets_the_output_size(tmp_path: Path, resolution: int) -> None:
    root = write_image_folder(tmp_path, {"train": {"ant": 1}, "val": {"ant": 1}}, size=37)
    data = folder_module(root, resolution=resolution)
    data.setup("fit")
    assert data.train_dataset is not None and data.val_dataset is not None
    assert data.train_dataset[0][0].shape == (3, resolution, resolution)
    assert data.val_dataset[0][0].shape == (3, resolution, resolution)


def test_eval_transform_resizes_then_centre_crops() -> None:
    assert eval_resize_side(224, 0.875) == 256
    assert eval_resize_side(128, 0.875) == 146
    # 64x96 image: a 4 px frame of one colour around another; R = 56 at crop_pct 0.875 resizes the shorter side
    # to 64 (a no-op), so the centre 56x56 crop holds the inside colour only (a plain resize would keep the frame).
    image = np.zeros((64, 96, 3), dtype=np.uint8)
    image[4:-4, 4:-4] = (200, 40, 90)
    out = ClassificationEvalTransform(56, 0.875, MEAN, STD)(image)
    rgb = (out * torch.tensor(STD)[:, None, None] + torch.tensor(MEAN)[:, None, None]) * 255
    assert out.shape == (3, 56, 56)
    assert torch.allclose(rgb, torch.tensor([200.0, 40.0, 90.0])[:, None, None].expand(3, 56, 56), atol=1.0)


def test_train_transform_options_and_seeding() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    transform = ClassificationTrainTransform(
        40, color_jitter=0.4, augment_policy="trivial", random_erasing=1.0, mean=MEAN, std=STD
    )
    outputs = []
    for seed in (1, 1, 2):
        transform.set_random_seed(seed)
        outputs.append(transform(image))
    assert outputs[0].shape == (3, 40, 40) and outputs[0].dtype == torch.float32
    assert torch.equal(outputs[0], outputs[1])
    assert not torch.equal(outputs[0], outputs[2])
    # random_erasing=1 erases a rectangle with 0 (the mean colour after normalising) in every image.
    erased = [(transform(image) == 0).all(dim=0).float().mean().item() for _ in range(20)]
    assert min(erased) >= 0.01


def test_dataset_seeds_augmentation_from_torch(tmp_path: Path) -> None:
    """Each process (DataLoader worker) re-seeds albumentations from torch's per-worker seed on its first item."""
    root = write_image_folder(tmp_path, {"train": {"ant": 1}, "val": {"ant": 1}})
    noisy = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(noisy).save(root / "train" / "ant" / "noisy.png")  # sorted after ant_0.png: item 1

    def first_item(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        data = folder_module(root)
        data.setup("fit")
        assert data.train_dataset is not None
        return data.train_dataset[1][0]

    assert torch.equal(first_item(3), first_item(3))
    assert not torch.equal(first_item(3), first_item(4))


# -- flat val folder with a labels file ------------------------------------------------------------------------------
def test_flat_val_with_labels_file(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path, {"train": {SYNSETS[0]: 1, SYNSETS[1]: 1, SYNSETS[2]: 1}})
    items = [("ILSVRC2012_val_00000001.JPEG", SYNSETS[2]), ("ILSVRC2012_val_00000002.png", SYNSETS[0])]
    labels = write_flat_split(root, "val", items)
    (root / "val" / "readme.txt").write_text("not an image")
    data = folder_module(root, val_labels_file=str(labels))
    data.setup("validate")
    assert data.val_dataset is not None
    assert assert_labels_match_content(data.val_dataset) == [2, 0]
    assert data.val_dataset.ignored_files == 1


def test_flat_val_without_header(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path, {"train": {"ant": 1, "bee": 1}})
    labels = write_flat_split(root, "val", [("a.png", "bee")], header=False)
    data = folder_module(root, val_labels_file=str(labels))
    data.setup("validate")
    assert data.val_dataset is not None and data.val_dataset.targets == [1]


def test_flat_val_errors(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path, {"train": {"ant": 1, "bee": 1}})
    labels = write_flat_split(root, "val", [("a.png", "ant"), ("b.png", "bee")])

    with pytest.raises(ValueError, match=r"val has no class folders.*val_labels_file"):
        folder_module(root).setup("validate")

    labels.write_text("filename,class\na.png,ant\nb.png,wasp\n")
    with pytest.raises(ValueError, match=rf"{labels}:3: class 'wasp' is not a class folder of the train.*ant, bee"):
        folder_module(root, val_labels_file=str(labels)).setup("validate")

    labels.write_text("filename,class\na.png,ant\nb.png,bee\n\ngone.png,bee\n")
    with pytest.raises(ValueError, match=rf"{labels}:5: gone.png is not an image file of"):
        folder_module(root, val_labels_file=str(labels)).setup("validate")

    labels.write_text("a.png,ant\n")
    with pytest.raises(ValueError, match=r"b.png is not in the labels file"):
        folder_module(root, val_labels_file=str(labels)).setup("validate")

    labels.write_text("a.png,ant\nb.png\n")
    with pytest.raises(ValueError, match=rf"{labels}:2: expected 'filename,class'"):
        folder_module(root, val_labels_file=str(labels)).setup("validate")

    with pytest.raises(FileNotFoundError, match="labels file .*missing.csv does not exist"):
        folder_module(root, val_labels_file=str(tmp_path / "missing.csv")).setup("validate")


# -- bad input -------------------------------------------------------------------------------------------------------
def test_empty_train_class_folder_is_an_error(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path, {"train": {"ant": 1, "bee": 0, "cat": 1}, "val": {"ant": 1}})
    (root / "train" / "bee" / "notes.txt").write_text("no images here")
    data = folder_module(root)
    assert data.class_names == ["ant", "bee", "cat"]
    with pytest.raises(ValueError, match=r"class folder .*train/bee holds no images"):
        data.setup("fit")


def test_empty_val_class_folder_is_allowed(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path, {"train": {"ant": 1, "bee": 1}, "val": {"ant": 0, "bee": 2}})
    data = folder_module(root)
    data.setup("validate")
    assert data.val_dataset is not None and data.val_dataset.targets == [1, 1]


def test_val_class_missing_from_train_is_an_error(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path, {"train": {"ant": 1, "bee": 1}, "val": {"ant": 1, "wasp": 1}})
    with pytest.raises(ValueError, match=r"val/wasp: class 'wasp' is not a class of the train split.*ant, bee"):
        folder_module(root).setup("validate")


def test_non_image_files_are_ignored_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = write_image_folder(tmp_path, {"train": {"ant": 2, "bee": 2}, "val": {"bee": 1}})
    (root / "train" / "ant" / "labels.json").write_text("{}")
    (root / "train" / "bee" / "Thumbs.db").write_bytes(b"\0")
    (root / "train" / "LICENSE").write_text("loose file, no class")
    with caplog.at_level(logging.WARNING, logger="tasks.classify.data.formats.imagefolder"):
        data = folder_module(root)
        data.setup("fit")
    assert data.train_dataset is not None and data.val_dataset is not None
    assert data.train_dataset.ignored_files == 3
    assert data.val_dataset.ignored_files == 0
    warnings = [r.getMessage() for r in caplog.records if "non-image" in r.getMessage()]
    assert len(warnings) == 1 and "ignored 3 non-image file(s)" in warnings[0] and "LICENSE" in warnings[0]
    assert assert_labels_match_content(data.train_dataset) == [0, 0, 1, 1]


def test_unreadable_images_are_skipped_and_counted(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path, {"train": {"ant": 2, "bee": 1, "cat": 2}, "val": {"ant": 1, "cat": 1}})
    write_corrupt_image(root / "train" / "bee" / "bee_broken.png")  # sorted after bee_0.png: item 3 of 6
    write_corrupt_image(root / "val" / "ant" / "ant_broken.png")  # item 1 of 3
    data = folder_module(root, skip_bad_samples=True)
    data.setup("fit")
    train, val = data.train_dataset, data.val_dataset
    assert train is not None and val is not None
    assert len(train) == 6 and train.targets == [0, 0, 1, 1, 2, 2]  # the mapping never shifts
    labels = assert_labels_match_content(train)  # the label always describes the image returned
    assert labels == [0, 0, 1, 2, 2, 2]  # the broken bee is replaced by the next readable item, a cat
    assert train.skipped_images == 1
    batch_labels = torch.cat([labels for _, labels in data.val_dataloader()])
    assert batch_labels.tolist() == [0, 2, 2] and val.skipped_images == 1
    assert train.skipped_images == 1  # reading val counted in val only


def test_unreadable_image_is_an_error_by_default(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path, {"train": {"ant": 2, "bee": 1, "cat": 2}, "val": {"ant": 1, "cat": 1}})
    broken = write_corrupt_image(root / "train" / "bee" / "bee_broken.png")  # item 3 of 6
    data = folder_module(root)
    data.setup("fit")
    assert data.train_dataset is not None and data.train_dataset[2][1] == 1
    with pytest.raises(UnreadableImageError, match=f"cannot read image {re.escape(str(broken))}"):
        data.train_dataset[3]


def test_missing_folders_and_no_classes(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path, {"train": {"ant": 1}})
    with pytest.raises(FileNotFoundError, match=r"split folder .*val does not exist"):
        folder_module(root).setup("validate")
    with pytest.raises(FileNotFoundError, match=r"split folder .*nowhere/train does not exist"):
        _ = folder_module(tmp_path / "nowhere").class_names
    (tmp_path / "bare" / "train").mkdir(parents=True)
    write_image(tmp_path / "bare" / "train" / "loose.png", (1, 2, 3))
    with pytest.raises(ValueError, match=r"bare/train has no class folders"):
        _ = folder_module(tmp_path / "bare").class_names


def test_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="takes no root"):
        ClassificationDataModule(format="synthetic", root=str(tmp_path))
    with pytest.raises(ValueError, match="needs root"):
        ClassificationDataModule(format="imagefolder")
    with pytest.raises(ValueError, match="valid formats"):
        ClassificationDataModule(format="coco")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="val_labels_file is for format='imagefolder'"):
        ClassificationDataModule(val_labels_file="labels.csv")
    with pytest.raises(ValueError, match=r"crop_pct must be in \(0, 1\]"):
        ClassificationDataModule(crop_pct=1.5)
    with pytest.raises(ValueError, match=r"augment_policy='rand'.*\['none', 'trivial'\]"):
        ClassificationDataModule(augment_policy="rand")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scale must be"):
        ClassificationDataModule(scale=(0.5, 0.2))
    with pytest.raises(ValueError, match="random_erasing is a probability"):
        ClassificationDataModule(random_erasing=2.0)


# -- predict ---------------------------------------------------------------------------------------------------------
def test_predict_items_carry_their_path(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "photos"
    b = write_image(folder / "b.png", class_colour("bee"), size=30, width=50)
    a = write_image(folder / "sub" / "a.jpg", class_colour("ant"))
    c = write_image(folder / "c.PNG", class_colour("cat"))
    (folder / "notes.md").write_text("# not an image")
    data = ClassificationDataModule(predict_root=str(folder), resolution=24, num_workers=0, eval_batch_size=2)
    with caplog.at_level(logging.WARNING, logger="tasks.classify.data.formats.imagefolder"):
        data.setup("predict")
    assert data.predict_dataset is not None and data.predict_dataset.ignored_files == 1
    assert any("ignored 1 non-image file(s)" in r.getMessage() for r in caplog.records)
    batches = list(data.predict_dataloader())
    paths = [p for _, batch_paths in batches for p in batch_paths]
    assert paths == [str(b), str(c), str(a)]  # recursive, sorted by path
    assert batches[0][0].shape == (2, 3, 24, 24)
    first, path = data.predict_dataset[0]
    assert path == str(b) and image_class(first, ["ant", "bee", "cat"]) == "bee"
    with pytest.raises(ValueError, match="predict needs predict_root"):
        ClassificationDataModule(num_workers=0).setup("predict")


# -- synthetic -------------------------------------------------------------------------------------------------------
def test_synthetic_layout_balance_determinism_and_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = ensure_synthetic_classification(tmp_path / "a", num_train=16, num_val=12, image_size=32, seed=5)
    second = ensure_synthetic_classification(tmp_path / "b", num_train=16, num_val=12, image_size=32, seed=5)
    assert first.name == "synthetic-classification-v1-train16-val12-size32-seed5"
    files = sorted(p.relative_to(first).as_posix() for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second).as_posix() for p in second.rglob("*") if p.is_file())
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)
    assert sorted(p.name for p in (first / "train").iterdir()) == list(CLASSIFICATION_CLASS_NAMES)
    train_counts = {name: len(list((first / "train" / name).glob("*.jpg"))) for name in CLASSIFICATION_CLASS_NAMES}
    assert set(train_counts.values()) == {2}
    val_counts = sorted(len(list(p.glob("*.jpg"))) for p in (first / "val").iterdir())
    assert val_counts == [1, 1, 1, 1, 2, 2, 2, 2]
    other_seed = ensure_synthetic_classification(tmp_path / "a", num_train=16, num_val=12, image_size=32, seed=6)
    assert (other_seed / files[0]).read_bytes() != (first / files[0]).read_bytes()

    def must_not_draw(*args: object) -> None:
        raise AssertionError("the cached dataset was generated again")

    monkeypatch.setattr("tasks.classify.data.synthetic.draw_classification_image", must_not_draw)
    assert ensure_synthetic_classification(tmp_path / "a", num_train=16, num_val=12, image_size=32, seed=5) == first


def test_synthetic_data_module_reads_the_generated_folders(tmp_path: Path) -> None:
    data = ClassificationDataModule(
        resolution=32,
        synthetic_train_images=16,
        synthetic_val_images=8,
        synthetic_image_size=36,
        cache_dir=str(tmp_path),
        batch_size=4,
        num_workers=0,
    )
    data.prepare_data()
    data.setup("fit")
    assert data.train_dataset is not None and data.val_dataset is not None
    assert data.train_dataset.class_names == data.class_names
    assert data.train_dataset.folder == data.data_root / "train"
    assert sorted(data.train_dataset.targets) == sorted(list(range(8)) * 2)
    assert sorted(data.val_dataset.targets) == list(range(8))
    images, labels = next(iter(data.train_dataloader()))
    assert images.shape == (4, 3, 32, 32) and labels.dtype == torch.int64
    with pytest.raises(ValueError, match="num_train must be >= 8"):
        ensure_synthetic_classification(tmp_path, num_train=4, num_val=2, image_size=32)


@pytest.mark.parametrize("class_name", CLASSIFICATION_CLASS_NAMES)
def test_synthetic_colour_family_and_object_extent(class_name: str) -> None:
    """The object is the only thing in its family's hue band (the muted background never is) and its extent
    spans 35-80 % of the side."""
    family, _ = CLASS_SPECS[class_name]
    size = 64
    for index in range(6):
        image = draw_classification_image(np.random.default_rng([7, index]), class_name, size)
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.float64)
        hue, vivid = hsv[..., 0] * 2, (hsv[..., 1] >= 150) & (hsv[..., 2] >= 110)
        in_band = {
            name: vivid & (np.abs((hue - centre + 180) % 360 - 180) <= 25) for name, centre in COLOUR_FAMILIES.items()
        }
        other = next(name for name in COLOUR_FAMILIES if name != family)
        assert in_band[other].sum() == 0
        ys, xs = np.nonzero(in_band[family])
        extent = max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) / size
        assert EXTENT_RANGE[0] - 0.04 <= extent <= EXTENT_RANGE[1] + 0.02, extent
