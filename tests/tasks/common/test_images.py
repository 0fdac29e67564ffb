"""Image decoding: every PIL mode loads as 8-bit RGB, EXIF orientation is applied, bad files raise one error type."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tasks.common.images import UnreadableImageError, list_image_files, load_rgb


@pytest.mark.parametrize(
    ("mode", "suffix", "colour"),
    [
        ("L", ".png", 200),
        ("LA", ".png", (200, 255)),
        ("RGBA", ".png", (10, 20, 30, 128)),
        ("P", ".png", 3),
        ("CMYK", ".jpg", (0, 255, 255, 0)),
        ("I;16", ".png", 65535),
        ("1", ".png", 1),
    ],
)
def test_modes_load_as_rgb(tmp_path: Path, mode: str, suffix: str, colour: object) -> None:
    path = tmp_path / f"image{suffix}"
    Image.new(mode, (7, 5), colour).save(path)  # type: ignore[arg-type]
    array = load_rgb(path)
    assert array.shape == (5, 7, 3) and array.dtype == np.uint8
    if mode == "L":
        assert (array == 200).all()
    if mode == "RGBA":
        assert array[0, 0].tolist() == [10, 20, 30]
    if mode == "CMYK":
        assert array[0, 0, 0] > 200 and array[0, 0, 1:].max() < 60  # cyan-free, magenta+yellow = red
    if mode == "I;16":
        assert (array == 255).all()


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.new("RGB", (40, 20), (255, 0, 0)).save(path, exif=exif)
    assert load_rgb(path).shape == (40, 20, 3)


@pytest.mark.parametrize("content", [b"", b"not an image at all", "truncated"])
def test_unreadable_files_raise_unreadable_image_error(tmp_path: Path, content: object) -> None:
    path = tmp_path / "bad.jpg"
    if content == "truncated":
        Image.new("RGB", (64, 64), (1, 2, 3)).save(tmp_path / "good.jpg")
        content = (tmp_path / "good.jpg").read_bytes()[:200]
    path.write_bytes(content)  # type: ignore[arg-type]
    with pytest.raises(UnreadableImageError, match="bad.jpg"):
        load_rgb(path)
    with pytest.raises(UnreadableImageError, match="missing.jpg"):
        load_rgb(tmp_path / "missing.jpg")


def test_list_image_files(tmp_path: Path) -> None:
    for name in ("b.JPG", "a.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in list_image_files(tmp_path)] == ["a.png", "b.JPG"]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        list_image_files(tmp_path / "nowhere")
