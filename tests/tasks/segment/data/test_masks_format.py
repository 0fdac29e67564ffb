"""The "masks" segmentation format: folder pairing, layout discovery, class names, bad input, CLI runs."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tasks.common.formats import DatasetNotFoundError
from tasks.common.images import UnreadableImageError
from tasks.segment.data.formats.masks import MaskFolderSegmentation
from tasks.segment.data.masks import InvalidMaskError, MissingMaskError, save_palette_mask
from tasks.segment.data.module import SegmentationDataModule
from tasks.segment.data.transforms import IGNORE_INDEX
from tasks.segment.task import main
from tests.helpers import QUIET_CPU_TRAINER

CLASSES = ["background", "road", "car"]
WIDTH, HEIGHT = 40, 32


def write_pairs(
    images: Path,
    masks: Path,
    names: Sequence[str],
    suffix: str = ".jpg",
    mode: str = "P",
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Noise images and random label masks (labels 0..2, one ignore row) for each name (a relative path without
    extension); masks as palette ("P") or grayscale ("L") PNGs. Returns name -> mask."""
    rng = np.random.default_rng(seed)
    written = {}
    for name in names:
        image_path, mask_path = images / f"{name}{suffix}", masks / f"{name}.png"
        image_path.parent.mkdir(parents=True, exist_ok=True)
        mask_path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)).save(image_path)
        mask = rng.integers(0, len(CLASSES), (HEIGHT, WIDTH), dtype=np.uint8)
        mask[0] = IGNORE_INDEX
        if mode == "P":
            save_palette_mask(mask_path, mask)
        else:
            Image.fromarray(mask, mode="L").save(mask_path)
        written[name] = mask
    return written


def write_classes(folder: Path, names: Sequence[str] = CLASSES) -> Path:
    path = folder / "classes.txt"
    path.write_text("".join(f"{name}\n" for name in names) + "\n")
    return path


def images_masks_layout(root: Path) -> Path:
    """root/images/{train,val}/*.jpg + root/masks/{train,val}/*.png (palette), classes.txt in root."""
    write_pairs(root / "images" / "train", root / "masks" / "train", ["t0", "t1", "t2"])
    write_pairs(root / "images" / "val", root / "masks" / "val", ["v0", "v1"], seed=1)
    write_classes(root)
    return root


def camvid_layout(root: Path) -> Path:
    """CamVid as SegNet ships it: root/{train,val,test}/*.png + root/{train,val,test}annot/*.png (grayscale)."""
    for seed, (split, names) in enumerate({"train": ["a", "b", "c"], "val": ["d", "e"], "test": ["f"]}.items()):
        write_pairs(root / split, root / f"{split}annot", names, suffix=".png", mode="L", seed=seed)
    write_classes(root)
    return root


def explicit_folders(tmp_path: Path) -> list[str]:
    """Images and masks in unrelated folders, nested, mixed image extensions: the folder arguments."""
    train_images, train_masks = tmp_path / "photos" / "set1", tmp_path / "annotation_tool" / "export" / "train"
    write_pairs(train_images, train_masks, ["x", "street/y"])
    write_pairs(train_images, train_masks, ["street/z"], suffix=".png", seed=2)
    write_pairs(tmp_path / "photos" / "set2", tmp_path / "vmasks", ["w"], suffix=".bmp", mode="L", seed=3)
    return [
        "--data.train_images",
        str(train_images),
        "--data.train_masks",
        str(train_masks),
        "--data.val_images",
        str(tmp_path / "photos" / "set2"),
        "--data.val_masks",
        str(tmp_path / "vmasks"),
    ]


def masks_module(**kwargs: object) -> SegmentationDataModule:
    options: dict[str, object] = {"crop_size": 32, "base_size": 32, "batch_size": 2, "num_workers": 0}
    options.update(kwargs)
    return SegmentationDataModule(format="masks", **options)  # type: ignore[arg-type]


def read_all(dataset: object) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [dataset[i] for i in range(len(dataset))]  # type: ignore[arg-type, index]


# -- CLI: one training step on each layout ----------------------------------------------------------------------------
SMALL = [
    "--backbone",
    "v3_small",
    "--width",
    "0.5",
    "--head",
    "lraspp",
    "--data.crop_size",
    "32",
    "--data.base_size",
    "32",
    "--data.batch_size",
    "2",
    "--data.num_workers",
    "0",
    *QUIET_CPU_TRAINER,
    "--trainer.fast_dev_run",
    "1",
]


@pytest.mark.parametrize("layout", ["explicit", "images_masks", "camvid"])
def test_fit_one_step_on_each_layout(tmp_path: Path, layout: str) -> None:
    if layout == "explicit":
        data = [*explicit_folders(tmp_path), "--data.class_names", f"[{', '.join(CLASSES)}]"]
    elif layout == "images_masks":
        data = ["--data.root", str(images_masks_layout(tmp_path / "data"))]
    else:
        data = ["--data.root", str(camvid_layout(tmp_path / "camvid")), "--data.test_split", "test"]
    cli = main(["fit", *SMALL, "--trainer.default_root_dir", str(tmp_path), "--data.format", "masks", *data])
    assert cli.datamodule.class_names == CLASSES == cli.model.hparams.class_names
    assert cli.datamodule.hparams["class_names"] == CLASSES  # read ones are recorded, so checkpoints carry them
    assert cli.model.hparams.num_classes == 3
    assert 0.0 <= float(cli.trainer.callback_metrics["val/mIoU"]) <= 1.0


# -- pairing, discovery, class names ---------------------------------------------------------------------------------
def test_explicit_folders_pair_nested_files_by_relative_path(tmp_path: Path) -> None:
    flags = explicit_folders(tmp_path)
    train_masks = Path(flags[3])
    write_classes(train_masks)  # beside the masks; not a mask itself
    data = masks_module(**dict(zip([f[len("--data.") :] for f in flags[0::2]], flags[1::2], strict=True)))
    assert data.class_names == CLASSES
    data.setup("fit")
    train = data.train_dataset
    assert isinstance(train, MaskFolderSegmentation) and train.unpaired_images == train.unpaired_masks == 0
    pairs = [(image.relative_to(Path(flags[1])).as_posix(), mask.name) for image, mask in train.samples]  # type: ignore[union-attr]
    assert pairs == [("street/y.jpg", "y.png"), ("street/z.png", "z.png"), ("x.jpg", "x.png")]
    assert len(data.val_dataset) == 1
    for image, mask in read_all(train):
        assert image.shape == (3, 32, 32) and mask.dtype == torch.int64
        assert set(mask.unique().tolist()) <= {0, 1, 2, IGNORE_INDEX}


def test_val_items_are_the_mask_indices(tmp_path: Path) -> None:
    written = write_pairs(tmp_path / "images" / "val", tmp_path / "masks" / "val", ["p"])  # palette indices
    write_pairs(tmp_path / "unused", tmp_path / "labels" / "val", ["p"], mode="L", seed=1)
    data = masks_module(root=str(tmp_path), class_names=CLASSES)
    data.setup("validate")
    ((_, mask),) = read_all(data.val_dataset)  # masks/ is found before labels/
    assert np.array_equal(mask.numpy(), written["p"])


def test_camvid_test_split_and_classes_file(tmp_path: Path) -> None:
    root = camvid_layout(tmp_path)
    data = masks_module(root=str(root), test_split="test")
    assert data.class_names == CLASSES and data.num_classes == 3  # root/classes.txt, before setup
    data.setup("test")
    assert data.test_dataset.images == root / "test" and data.test_dataset.masks == root / "testannot"
    assert len(read_all(data.test_dataset)) == 1


def test_classes_file_errors_name_file_and_line(tmp_path: Path) -> None:
    images_masks_layout(tmp_path)
    (tmp_path / "classes.txt").write_text("background\n\nroad\n")
    with pytest.raises(ValueError, match=r"classes\.txt:2 is blank"):
        _ = masks_module(root=str(tmp_path)).class_names
    (tmp_path / "classes.txt").write_text("background\nroad\nroad\n")
    with pytest.raises(ValueError, match=r"classes\.txt:3: class 'road' is named twice \(first at line 2\)"):
        _ = masks_module(root=str(tmp_path)).class_names


# -- argument errors -----------------------------------------------------------------------------------------------
def test_argument_errors_name_the_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"train_images is for format='masks' only \(got format='voc'"):
        SegmentationDataModule(format="voc", root=str(tmp_path), train_images="x")
    with pytest.raises(ValueError, match=r"format='masks' needs root=<dataset folder> or train_images or val_images"):
        masks_module()
    bad = [
        ({"train_images": "x", "val_images": "y", "val_masks": "z"}, r"--data.train_images is given without "),
        ({"val_masks": "z", "root": str(tmp_path)}, r"--data.val_masks is given without --data.val_images"),
        ({"test_images": "x", "test_masks": "y"}, r"test_split is None \(test would run on the val split\): pass"),
        ({"test_images": "x", "test_masks": "y", "test_split": "val"}, r"test_split is 'val' \(test would run on"),
    ]
    for arguments, message in bad:
        data = masks_module(class_names=CLASSES, **arguments)  # found when the folders are first looked up
        with pytest.raises(ValueError, match=message):
            data.setup(None)


def test_missing_class_names_is_one_message(tmp_path: Path) -> None:
    root = images_masks_layout(tmp_path)
    (root / "classes.txt").unlink()
    with pytest.raises(ValueError) as raised:
        _ = masks_module(root=str(root)).class_names
    message = str(raised.value)
    assert "--data.class_names [background, road, ...]" in message and "classes.txt" in message
    assert str(root / "masks" / "train") in message and str(root) in message


def test_no_layout_found_lists_what_was_looked_for(tmp_path: Path) -> None:
    (tmp_path / "pictures").mkdir()
    with pytest.raises(DatasetNotFoundError) as raised:
        masks_module(root=str(tmp_path), class_names=CLASSES).setup("fit")
    message = str(raised.value)
    for looked in ("images/train/ + masks/train/", "images/train/ + labels/train/", "train/ + trainannot/"):
        assert looked in message
    assert "--data.train_images DIR --data.train_masks DIR" in message
    # and a root with the val split only names the val flags when validating needs it
    write_pairs(tmp_path / "images" / "train", tmp_path / "masks" / "train", ["a"])
    with pytest.raises(DatasetNotFoundError, match=r"val split 'val'.*--data.val_images DIR --data.val_masks DIR"):
        masks_module(root=str(tmp_path), class_names=CLASSES).setup("fit")


def test_empty_folders_are_named(tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    write_pairs(tmp_path / "other", tmp_path / "msk", ["a"])
    data = masks_module(train_images=str(tmp_path / "imgs"), train_masks=str(tmp_path / "msk"), class_names=CLASSES)
    with pytest.raises(ValueError, match=r"images folder .*imgs \(--data.train_images/--data.train_masks\) holds no"):
        data.setup("fit")
    (tmp_path / "jpgmasks").mkdir()
    Image.new("L", (4, 4)).save(tmp_path / "jpgmasks" / "a.jpg")
    data = masks_module(
        train_images=str(tmp_path / "other"), train_masks=str(tmp_path / "jpgmasks"), class_names=CLASSES
    )
    with pytest.raises(
        ValueError, match=r"masks folder .*jpgmasks .*holds no \.png masks \(it holds 1, e\.g\. .*a\.jpg"
    ):
        data.setup("fit")
    data = masks_module(train_images=str(tmp_path / "nope"), train_masks=str(tmp_path / "msk"), class_names=CLASSES)
    with pytest.raises(DatasetNotFoundError, match=r"images folder .*nope .*does not exist"):
        data.setup("fit")


# -- bad samples -----------------------------------------------------------------------------------------------------
def test_size_mismatch_names_both_files(tmp_path: Path) -> None:
    root = images_masks_layout(tmp_path)
    Image.new("P", (10, 12)).save(root / "masks" / "train" / "t1.png")
    data = masks_module(root=str(root))
    data.setup("fit")
    with pytest.raises(InvalidMaskError, match=r"mask .*masks/train/t1\.png is 10x12 .*image .*images/train/t1\.jpg"):
        read_all(data.train_dataset)


def test_class_index_beyond_the_list_names_both_files(tmp_path: Path) -> None:
    root = images_masks_layout(tmp_path)
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    mask[0, :2] = [3, 11]  # CamVid's void 11 must be written as 255
    Image.fromarray(mask, mode="L").save(root / "masks" / "train" / "t1.png")
    data = masks_module(root=str(root))
    data.setup("fit")
    with pytest.raises(
        InvalidMaskError, match=r"masks/train/t1\.png has labels \[3, 11\] outside 0\.\.2 .*images/train/t1\.jpg"
    ):
        read_all(data.train_dataset)


def test_missing_partners_are_found_at_construction(tmp_path: Path) -> None:
    root = images_masks_layout(tmp_path)
    (root / "masks" / "train" / "t1.png").unlink()
    write_pairs(root / "elsewhere", root / "masks" / "train", ["orphan"])
    with pytest.raises(MissingMaskError) as raised:
        masks_module(root=str(root)).setup("fit")
    message = str(raised.value)
    assert "images without a mask: 1, e.g. " in message and "images/train/t1.jpg" in message
    assert "masks without an image: 1, e.g. " in message and "masks/train/orphan.png" in message
    (root / "images" / "train" / "t1.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"images without a mask: 0; masks without an image: 1.*orphan\.png"):
        masks_module(root=str(root)).setup("fit")


def test_bad_samples_are_counted_logged_skips(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = images_masks_layout(tmp_path)
    Image.new("P", (10, 12)).save(root / "masks" / "train" / "t1.png")  # wrong size
    write_pairs(root / "images" / "train", root / "elsewhere", ["no_mask"])  # image without mask
    write_pairs(root / "elsewhere", root / "masks" / "train", ["no_image"])  # mask without image
    data = masks_module(root=str(root), skip_bad_samples=True)
    with caplog.at_level(logging.WARNING):
        data.setup("fit")
    train = data.train_dataset
    assert train.unpaired_images == train.unpaired_masks == 1 and len(train) == 5
    assert "skipped and counted when read" in caplog.text and "no_mask.jpg" in caplog.text
    with caplog.at_level(logging.WARNING):
        items = read_all(train)
    # items 0 and 1 (no_image, no_mask) both skip to t0, so reading no_image skips twice; t1 once: every event counts
    assert len(items) == 5 and train.skipped_images == 4
    for name in ("t1.png", "no_mask.png not found", "no_image.png has no image"):
        assert name in caplog.text
    assert all(image.shape == (3, 32, 32) for image, _ in items)


def test_unpaired_mask_alone_is_an_unreadable_image(tmp_path: Path) -> None:
    write_pairs(tmp_path / "i", tmp_path / "m", ["a"])
    write_pairs(tmp_path / "x", tmp_path / "m", ["b"])
    dataset = MaskFolderSegmentation(tmp_path / "i", tmp_path / "m", lambda *a: a, CLASSES, skip_bad_samples=True)
    with pytest.raises(UnreadableImageError, match=r"m/b\.png has no image in .*/i"):
        dataset._read(1)
