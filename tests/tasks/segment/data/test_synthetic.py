"""Synthetic segmentation shapes: deterministic, cached, atomic, real VOC layout, borders marked 255."""

from __future__ import annotations

import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import tasks.segment.data.synthetic as synthetic
from deploy.run.drawing import voc_palette
from tasks.common.synthetic import HUE_JITTER
from tasks.segment.data.formats.voc import VocSegmentation
from tasks.segment.data.module import SegmentationDataModule
from tasks.segment.data.synthetic import (
    CLASS_HUES,
    SEGMENTATION_CLASS_NAMES,
    ensure_synthetic_segmentation,
    synthetic_segmentation_name,
)
from tasks.segment.data.transforms import IGNORE_INDEX

PARAMS = {"num_train": 6, "num_val": 3, "image_size": 64}


def test_generation_is_deterministic(tmp_path: Path) -> None:
    first = ensure_synthetic_segmentation(tmp_path / "a", **PARAMS)
    second = ensure_synthetic_segmentation(tmp_path / "b", **PARAMS)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert len(files) == 2 * 9 + 2
    for relative in files:
        assert (first / relative).read_bytes() == (second / relative).read_bytes(), relative
    other_seed = ensure_synthetic_segmentation(tmp_path / "a", **PARAMS, seed=1)
    assert other_seed != first
    relative = "SegmentationClass/train_000001.png"
    assert (other_seed / relative).read_bytes() != (first / relative).read_bytes()


def test_second_call_reuses_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = ensure_synthetic_segmentation(tmp_path, **PARAMS)
    stamp = (path / "SegmentationClass" / "train_000001.png").stat().st_mtime_ns

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached dataset was regenerated")

    monkeypatch.setattr(synthetic, "_write_split", fail)
    assert ensure_synthetic_segmentation(tmp_path, **PARAMS) == path
    assert (path / "SegmentationClass" / "train_000001.png").stat().st_mtime_ns == stamp


def test_generation_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    staging_folders: list[str] = []
    real_mkdtemp = tempfile.mkdtemp

    def recording_mkdtemp(*args: object, **kwargs: object) -> str:
        folder = real_mkdtemp(*args, **kwargs)  # type: ignore[call-overload]
        staging_folders.append(folder)
        return folder

    monkeypatch.setattr(tempfile, "mkdtemp", recording_mkdtemp)
    calls = {"n": 0}
    real_draw = synthetic.draw_segmentation_scene

    def interrupted_draw(rng: np.random.Generator, size: int) -> object:
        calls["n"] += 1
        if calls["n"] == 8:  # in the val split: train is complete on disk, the dataset is not
            raise KeyboardInterrupt
        return real_draw(rng, size)

    monkeypatch.setattr(synthetic, "draw_segmentation_scene", interrupted_draw)
    with pytest.raises(KeyboardInterrupt):
        ensure_synthetic_segmentation(tmp_path, **PARAMS)
    assert list(tmp_path.iterdir()) == []  # neither a final nor a half-written folder is left
    monkeypatch.setattr(synthetic, "draw_segmentation_scene", real_draw)
    path = ensure_synthetic_segmentation(tmp_path, **PARAMS)
    assert [p.name for p in tmp_path.iterdir()] == [path.name] == [synthetic_segmentation_name(6, 3, 64, 0)]
    assert len(staging_folders) == 2
    for folder in map(Path, staging_folders):
        assert folder.parent == tmp_path and folder.name.startswith(f".{path.name}.tmp-") and not folder.exists()


def test_content_is_voc_layout_with_marked_borders(tmp_path: Path) -> None:
    path = ensure_synthetic_segmentation(tmp_path, num_train=30, num_val=2, image_size=96)
    stems = (path / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    assert len(stems) == 30 and (path / "ImageSets" / "Segmentation" / "val.txt").read_text().split() == [
        "val_000001",
        "val_000002",
    ]
    labels_seen: set[int] = set()
    coverage = []
    for stem in stems:
        image = Image.open(path / "JPEGImages" / f"{stem}.jpg")
        assert image.size == (96, 96) and image.mode == "RGB"
        hue = cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2HSV_FULL)[..., 0].astype(np.float64) * 360 / 256
        png = Image.open(path / "SegmentationClass" / f"{stem}.png")
        assert png.mode == "P" and png.getpalette() == voc_palette()
        mask = np.array(png)
        values = set(np.unique(mask).tolist())
        assert values <= {0, 1, 2, 3, 4, IGNORE_INDEX} and IGNORE_INDEX in values and len(values - {0, 255}) >= 1
        labels_seen |= values
        for label in values - {0, IGNORE_INDEX}:  # each class in its own hue band (the colour cue), JPEG aside
            offset = np.median((hue[mask == label] - CLASS_HUES[label - 1] + 180) % 360 - 180)
            assert abs(offset) <= HUE_JITTER + 10, (stem, label, offset)
        coverage.append(float(((mask != 0) & (mask != IGNORE_INDEX)).mean()))
        # Borders: no two neighbouring pixels carry different class labels; a 255 band always separates them.
        for a, b in ((mask[:, :-1], mask[:, 1:]), (mask[:-1], mask[1:])):
            assert not ((a != b) & (a != IGNORE_INDEX) & (b != IGNORE_INDEX)).any()
        # The band is thin: a few percent of the pixels, not the objects.
        assert (mask == IGNORE_INDEX).mean() < 0.12
    assert labels_seen >= {0, 1, 2, 3, 4, IGNORE_INDEX}
    assert np.median(coverage) > 0.1  # mostly medium and large objects


def test_band_is_two_pixels_wide_around_a_square() -> None:
    owner = np.full((12, 12), -1, dtype=np.int16)
    owner[3:8, 3:8] = 0
    band = synthetic.object_borders(owner)
    expected = np.zeros((12, 12), dtype=bool)
    expected[2:9, 2:9] = True
    expected[4:7, 4:7] = False  # one pixel inside and one outside the square's edge
    assert np.array_equal(band, expected)
    owner[:, :2] = 1  # a shape running off the left edge: no band along the image edge
    assert not synthetic.object_borders(owner)[:, 0].any()


def test_data_module_reads_it_through_the_voc_path(tmp_path: Path) -> None:
    data = SegmentationDataModule(
        synthetic_train_images=4,
        synthetic_val_images=2,
        synthetic_image_size=64,
        crop_size=48,
        base_size=64,
        batch_size=2,
        num_workers=0,
        cache_dir=str(tmp_path),
    )
    assert data.num_classes == 5 and data.class_names == list(SEGMENTATION_CLASS_NAMES)
    assert data.class_names == ["background", "circle", "square", "triangle", "cross"]
    assert not any(tmp_path.iterdir())  # class info did not generate anything
    data.prepare_data()
    data.setup("fit")
    assert isinstance(data.train_dataset, VocSegmentation) and len(data.train_dataset) == 4
    assert data.train_dataset.root == tmp_path / synthetic_segmentation_name(4, 2, 64, 0)
    images, masks = next(iter(data.train_dataloader()))
    assert images.shape == (2, 3, 48, 48) and masks.shape == (2, 48, 48)
    images, masks = next(iter(data.val_dataloader()))
    assert images.shape == (1, 3, 64, 64) and set(masks.unique().tolist()) <= {0, 1, 2, 3, 4, IGNORE_INDEX}
    with pytest.raises(ValueError, match="splits 'train' and 'val' only"):
        SegmentationDataModule(val_split="test")


def test_invalid_parameters_name_the_argument(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="num_val"):
        ensure_synthetic_segmentation(tmp_path, num_train=2, num_val=0, image_size=64)
    with pytest.raises(ValueError, match="image_size"):
        ensure_synthetic_segmentation(tmp_path, num_train=2, num_val=1, image_size=8)
