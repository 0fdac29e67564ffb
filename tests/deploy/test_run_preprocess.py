"""`deploy.run`'s torch-free preprocessing against the predictors' own: the evaluation transforms' albumentations
steps before their normalisation (pixel for pixel); and its decoding (`load_rgb`, which the tasks' data modules use
too) of every kind of image file."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest
from albumentations.pytorch import ToTensorV2
from PIL import Image

from deploy.run import images
from deploy.run.contract import read_contract
from deploy.run.errors import InputError
from deploy.run.preprocess import prepare
from tasks.classify.data.transforms import ClassificationEvalTransform, eval_resize_side
from tasks.detect.data.transforms import DetectionTransform
from tests.deploy.run_models import metadata

# (H, W): odd sizes, both orientations, already the network size, and the 1-pixel edges
SIZES = [(37, 53), (480, 640), (641, 479), (32, 32), (1, 1), (1, 200), (200, 1), (3, 5), (319, 321), (256, 500)]
MEANS = [(0.485, 0.456, 0.406), (0.5, 0.5, 0.5), (0.0019608, 0.998, 0.2)]  # fills 123.675.., 127.5 (a tie), ~0.5


def albumentations_uint8(transform: A.Compose, image: np.ndarray) -> np.ndarray:
    """The transform's steps before its normalisation, applied to `image`: the uint8 the network would see."""
    steps = [step for step in transform.transforms if not isinstance(step, A.Normalize | ToTensorV2)]
    return A.Compose(steps)(image=image)["image"]


def random_images(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for size in SIZES]


@pytest.mark.parametrize("size", [32, 320, 33])
@pytest.mark.parametrize("letterbox", [False, True])
@pytest.mark.parametrize("mean", MEANS)
def test_detection_inputs_equal_the_evaluation_transform(size, letterbox, mean):
    transform = DetectionTransform(size, mean, (0.2, 0.2, 0.2), letterbox=letterbox).compose
    data = metadata("detect", size=[size, size], resize="letterbox" if letterbox else "stretch", mean=list(mean))
    del data["input"]["pad_value"]  # the fill comes from the mean, as the transform's
    contract = read_contract(data, "test.onnx")
    for image in random_images():
        ours, meta = prepare(image, contract)
        want = albumentations_uint8(transform, image)
        assert ours.dtype == np.uint8 and ours.shape == (size, size, 3)
        assert np.array_equal(ours, want), f"{image.shape} letterbox={letterbox} size={size}"
        assert meta["orig_size"] == image.shape[:2]


@pytest.mark.parametrize(("resolution", "crop_pct"), [(32, 0.875), (224, 0.875), (224, 0.95), (33, 1.0), (7, 0.5)])
@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_classification_inputs_equal_the_evaluation_transform(resolution, crop_pct, interpolation):
    transform = ClassificationEvalTransform(resolution, crop_pct, interpolation=interpolation).compose
    side = eval_resize_side(resolution, crop_pct)
    data = metadata("classify", size=[resolution, resolution], resize_side=side, interpolation=interpolation)
    contract = read_contract(data, "test.onnx")
    for image in random_images(1):
        ours, _ = prepare(image, contract)
        assert np.array_equal(ours, albumentations_uint8(transform, image)), f"{image.shape} {resolution}"


def test_segmentation_inputs_are_the_images_themselves():
    contract = read_contract(metadata("segment"), "test.onnx")
    for image in random_images(2):
        ours, meta = prepare(image, contract)
        assert ours is image and meta["orig_size"] == image.shape[:2]


def test_letterbox_scale_and_padding_fill():
    """The scale maps input pixels back (max(H, W) / S both ways); the padding is the mean, OpenCV-rounded."""
    data = metadata("detect", size=[32, 32], resize="letterbox", pad_value=[127.5, 0.4, 254.6])
    ours, meta = prepare(np.zeros((10, 40, 3), np.uint8), read_contract(data, "test.onnx"))
    assert ours.shape == (32, 32, 3) and (ours[:8] == 0).all()
    assert (ours[8:] == [128, 0, 255]).all()  # 127.5 rounds to even (128), 0.4 down, 254.6 up
    np.testing.assert_array_equal(meta["scale"], np.float32([40 / 32, 40 / 32]))


def image_files(folder) -> list:
    """One file of each kind `load_rgb` treats specially."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (9, 13, 3), dtype=np.uint8)
    files = []

    def save(name: str, image: Image.Image, **options) -> None:
        image.save(folder / name, **options)
        files.append(folder / name)

    save("rgb.png", Image.fromarray(rgb))
    save("gray.png", Image.fromarray(rgb[..., 0]))
    save("gray16.png", Image.fromarray(rng.integers(0, 65536, (9, 13), dtype=np.uint16)))
    save("rgba.png", Image.fromarray(np.dstack([rgb, rgb[..., :1]])))
    palette = Image.fromarray(rgb).convert("P")
    palette.info["transparency"] = 3
    save("palette.png", palette, transparency=3)
    save("cmyk.jpg", Image.fromarray(rgb).convert("CMYK"))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: the decoded frame is 13 x 9
    save("rotated.jpg", Image.fromarray(rgb), exif=exif)
    save("float.tif", Image.fromarray(rng.random((9, 13), dtype=np.float32) * 1000))
    return files


def test_every_kind_of_image_decodes_to_uint8_rgb(tmp_path):
    for path in image_files(tmp_path):
        want = (13, 9, 3) if path.name == "rotated.jpg" else (9, 13, 3)  # EXIF orientation applied
        decoded = images.load_rgb(path)
        assert decoded.dtype == np.uint8 and decoded.shape == want, path.name


def test_16_bit_values_shift_down_and_32_bit_ones_scale_by_their_maximum(tmp_path):
    Image.fromarray(np.array([[0, 255, 256, 65535]], dtype=np.uint16)).save(tmp_path / "gray16.png")
    Image.fromarray(np.array([[0.0, 500.0, 1000.0]], dtype=np.float32)).save(tmp_path / "float.tif")
    np.testing.assert_array_equal(images.load_rgb(tmp_path / "gray16.png")[0, :, 0], [0, 0, 1, 255])
    np.testing.assert_array_equal(images.load_rgb(tmp_path / "float.tif")[0, :, 0], [0, 127, 255])


def test_an_undecodable_image_is_named(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(InputError, match=r"image .*broken\.jpg cannot be decoded .*replace it"):
        images.load_rgb(bad)
