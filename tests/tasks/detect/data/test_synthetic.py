"""Synthetic shapes: deterministic, cached, atomic, valid COCO with the promised content."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

import tasks.detect.data.synthetic as synthetic
from tasks.common.synthetic import SHAPE_NAMES
from tasks.detect.data.synthetic import ensure_synthetic_detection, synthetic_dataset_name

PARAMS = {"num_train": 6, "num_val": 3, "image_size": 64}


def test_generation_is_deterministic(tmp_path: Path) -> None:
    first = ensure_synthetic_detection(tmp_path / "a", **PARAMS)
    second = ensure_synthetic_detection(tmp_path / "b", **PARAMS)
    for relative in ("annotations/instances_train.json", "annotations/instances_val.json", "train/000004.jpg"):
        assert (first / relative).read_bytes() == (second / relative).read_bytes()
    other_seed = ensure_synthetic_detection(tmp_path / "a", **PARAMS, seed=1)
    assert other_seed != first
    assert (other_seed / "annotations/instances_train.json").read_bytes() != (
        first / "annotations/instances_train.json"
    ).read_bytes()


def test_second_call_reuses_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = ensure_synthetic_detection(tmp_path, **PARAMS)
    stamp = (path / "annotations" / "instances_train.json").stat().st_mtime_ns

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached dataset was regenerated")

    monkeypatch.setattr(synthetic, "_write_split", fail)
    assert ensure_synthetic_detection(tmp_path, **PARAMS) == path
    assert (path / "annotations" / "instances_train.json").stat().st_mtime_ns == stamp


def test_generation_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    staging_folders: list[str] = []
    real_mkdtemp = tempfile.mkdtemp

    def recording_mkdtemp(*args: object, **kwargs: object) -> str:
        folder = real_mkdtemp(*args, **kwargs)  # type: ignore[call-overload]
        staging_folders.append(folder)
        return folder

    monkeypatch.setattr(tempfile, "mkdtemp", recording_mkdtemp)  # build_folder_atomically's staging folder
    calls = {"n": 0}
    real_draw = synthetic.draw_scene

    def interrupted_draw(rng: np.random.Generator, size: int) -> object:
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real_draw(rng, size)

    monkeypatch.setattr(synthetic, "draw_scene", interrupted_draw)
    with pytest.raises(KeyboardInterrupt):
        ensure_synthetic_detection(tmp_path, **PARAMS)
    assert list(tmp_path.iterdir()) == []  # neither a final nor a half-written folder is left
    monkeypatch.setattr(synthetic, "draw_scene", real_draw)
    path = ensure_synthetic_detection(tmp_path, **PARAMS)
    assert [p.name for p in tmp_path.iterdir()] == [path.name] == [synthetic_dataset_name(6, 3, 64, 0)]
    assert len(staging_folders) == 2
    for folder in map(Path, staging_folders):
        assert folder.parent == tmp_path and folder.name.startswith(f".{path.name}.tmp-") and not folder.exists()


def test_content_is_valid_coco_with_the_promised_objects(tmp_path: Path) -> None:
    path = ensure_synthetic_detection(tmp_path, num_train=40, num_val=2, image_size=96)
    coco = COCO(str(path / "annotations" / "instances_train.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(SHAPE_NAMES)
    per_image = [len(coco.getAnnIds(imgIds=[i])) for i in coco.getImgIds()]
    assert min(per_image) >= 1 and max(per_image) <= 4
    boxes = np.array([a["bbox"] for a in coco.loadAnns(coco.getAnnIds())])
    assert (boxes[:, :2] >= 0).all() and (boxes[:, :2] + boxes[:, 2:] <= 96).all()
    sides = boxes[:, 2:].max(axis=1) / 96
    assert np.median(sides) > 0.15 and sides.max() <= 0.6
    assert len({a["category_id"] for a in coco.loadAnns(coco.getAnnIds())}) == 4
    image = Image.open(path / "train" / coco.imgs[1]["file_name"])
    assert image.size == (96, 96) and image.mode == "RGB"
    document = json.loads((path / "annotations" / "instances_val.json").read_text())
    assert len(document["images"]) == 2


def test_invalid_parameters_name_the_argument(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="num_val"):
        ensure_synthetic_detection(tmp_path, num_train=2, num_val=0, image_size=64)
    with pytest.raises(ValueError, match="image_size"):
        ensure_synthetic_detection(tmp_path, num_train=2, num_val=1, image_size=8)
