"""`deploy.run.load(path)(images)` on model files that follow the end-to-end contract (`tests/deploy/run_models.py`):
the predictors' results computed here from the same pixels, batching that never mixes images, fixed batches, the
runner's own NMS, and the errors for files it cannot run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from deploy.metadata import KEY, MetadataError, sidecar_path, write_sidecar
from deploy.run import InputError, load
from tasks.classify.data.transforms import ClassificationEvalTransform
from tasks.detect.data.transforms import DetectionTransform, input_scale
from tasks.detect.model import to_original_coordinates
from tests.deploy.run_models import (
    CLASSIFY_NAMES,
    DETECT_NAMES,
    MEAN,
    SEGMENT_NAMES,
    SIZE,
    STD,
    add_metadata,
    contract_model,
    fake_detections,
    fake_probabilities,
    metadata,
    plain_classifier,
)
from tests.deploy.test_run_preprocess import albumentations_uint8

# (H, W): odd sizes of both orientations, bright and dark images (the fake detector finds 3 or 1)
SIZES = [(37, 53), (48, 64), (65, 47), (32, 32), (5, 90)]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    built = {
        "detect": contract_model("detect", folder / "detect.onnx"),
        "letterbox": contract_model("detect", folder / "letterbox.onnx", resize="letterbox"),
        "fixed": contract_model("detect", folder / "fixed.onnx", batch=3),
        "runner_nms": contract_model("detect", folder / "runner_nms.onnx", nms="runner"),
        "segment": contract_model("segment", folder / "segment.onnx"),
        "segment_fixed": contract_model("segment", folder / "segment_fixed.onnx", batch=2),
        "classify": contract_model("classify", folder / "classify.onnx"),
    }
    return {name: path for name, (path, _) in built.items()}


def noise_images(seed: int = 0) -> list[np.ndarray]:
    """Noise images, alternately bright (mean > 0.5) and dark."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 120, (*s, 3), dtype=np.uint8) + np.uint8(120 * (i % 2)) for i, s in enumerate(SIZES)]


def expected_detections(image: np.ndarray, letterbox: bool) -> dict[str, np.ndarray]:
    """The fake detector's detections on the predictor's input, mapped back as the predictor maps them."""
    transform = DetectionTransform(SIZE, MEAN, STD, letterbox=letterbox).compose
    found = fake_detections(albumentations_uint8(transform, image))
    height, width = image.shape[:2]
    boxes = {"boxes": torch.from_numpy(found["boxes"])}
    scale = input_scale(height, width, SIZE, letterbox)
    mapped = to_original_coordinates([boxes], [scale], [torch.tensor([height, width])])[0]["boxes"].numpy()
    return {**found, "boxes": mapped}


@pytest.mark.parametrize("name", ["detect", "letterbox", "fixed"])
def test_detections_are_the_predictors(models, name):
    model = load(models[name])
    images = noise_images()
    results = model(images, batch_size=2)
    counts = [len(result["labels"]) for result in results]
    assert counts == [1, 3, 1, 3, 1]  # padded rows dropped
    for image, result in zip(images, results, strict=True):
        want = expected_detections(image, letterbox=name == "letterbox")
        assert result["boxes"].dtype == np.float32 and result["labels"].dtype == np.int64
        np.testing.assert_allclose(result["boxes"], want["boxes"], rtol=0, atol=1e-4)
        np.testing.assert_allclose(result["scores"], want["scores"], rtol=0, atol=1e-6)
        np.testing.assert_array_equal(result["labels"], want["labels"])
        assert result["names"] == [DETECT_NAMES[label] for label in want["labels"]]
        assert "path" not in result
    # boxes clamped to each image: the first fake box starts left of the input and ends below it
    assert results[1]["boxes"][0, 0] == 0 and results[1]["boxes"][0, 3] == images[1].shape[0]


def test_results_do_not_depend_on_the_batch(models):
    """One at a time, all at once, in a fixed-batch file (padding dropped): the same results."""
    images = noise_images(1)
    alone = [load(models["detect"])([image])[0] for image in images]
    for name, batch_size in (("detect", 8), ("fixed", 8), ("fixed", 2)):
        together = load(models[name])(images, batch_size=batch_size)
        for one, other in zip(alone, together, strict=True):
            for key in ("boxes", "scores", "labels"):
                np.testing.assert_array_equal(one[key], other[key])


def test_paths_and_folders(models, tmp_path):
    """Folders count as their images in name order; path inputs carry their path; PIL images are taken as RGB."""
    images = noise_images()
    folder = tmp_path / "folder"
    folder.mkdir()
    for index, image in enumerate(images[:3]):
        Image.fromarray(image).save(folder / f"{2 - index}.png")
    (folder / "notes.txt").write_text("not an image")
    single = tmp_path / "single.png"
    Image.fromarray(images[3]).save(single)
    results = load(models["classify"])([folder, str(single), Image.fromarray(images[4])])
    assert [r.get("path") for r in results] == [str(folder / f"{i}.png") for i in range(3)] + [str(single), None]
    by_array = load(models["classify"])([images[2], images[1], images[0], images[3], images[4]])
    assert [r["labels"] for r in results] == [r["labels"] for r in by_array]


def test_runner_nms_of_a_file_without_nms(models):
    """`postprocess.nms == "runner"`: the runner's NMS on the file's scores and boxes, as torchvision's."""
    from tests.deploy.test_run_nms import reference

    model = load(models["runner_nms"])
    images = noise_images(2)
    results = model(images)
    session = ort.InferenceSession(str(models["runner_nms"]), providers=["CPUExecutionProvider"])
    postprocess = model.contract.postprocess
    transform = DetectionTransform(SIZE, MEAN, STD).compose
    for image, result in zip(images, results, strict=True):
        batch = albumentations_uint8(transform, image).transpose(2, 0, 1)[None]
        scores, boxes = session.run(["scores", "boxes"], {"images": batch})
        want = reference(scores[0], boxes[0], postprocess)
        assert 0 < len(want["labels"]) <= postprocess["max_detections"]
        np.testing.assert_array_equal(result["labels"], want["labels"])
        np.testing.assert_allclose(result["scores"], want["scores"], rtol=0, atol=1e-6)
        height, width = image.shape[:2]
        scale = np.array([width / SIZE, height / SIZE] * 2, dtype=np.float32)
        clamped = np.minimum(want["boxes"] * scale, [width, height, width, height]).clip(0)
        np.testing.assert_allclose(result["boxes"], clamped, rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("name", ["segment", "segment_fixed"])
def test_masks_at_each_images_own_size(models, name):
    images = noise_images(3)
    results = load(models[name])(images, batch_size=3)
    for image, result in zip(images, results, strict=True):
        want = image[..., 0].astype(np.int64) // 64
        assert result["mask"].dtype == np.int64 and np.array_equal(result["mask"], want)
        assert result["labels"] == np.unique(want).tolist()
        assert result["names"] == [SEGMENT_NAMES[label] for label in result["labels"]]


def test_masks_of_a_file_of_one_size(tmp_path):
    """A segmentation file of a fixed size (runtimes without dynamic sizes): images stretched to it, masks resized
    back to each image, nearest neighbour by pixel centres (as Pillow's NEAREST)."""
    path, _ = contract_model("segment", tmp_path / "fixed_size.onnx", size=[SIZE, SIZE], resize="stretch")
    images = noise_images(5)
    for image, result in zip(images, load(path)(images), strict=True):
        small = albumentations_uint8(DetectionTransform(SIZE, MEAN, STD).compose, image)[..., 0] // 64
        height, width = image.shape[:2]
        want = np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.NEAREST))
        assert result["mask"].shape == (height, width) and np.array_equal(result["mask"], want)


def test_top_classes_are_the_predictors(models):
    transform = ClassificationEvalTransform(SIZE, 0.875).compose
    images = noise_images(4)
    for image, result in zip(images, load(models["classify"])(images), strict=True):
        probabilities = fake_probabilities(albumentations_uint8(transform, image))
        want = np.argsort(-probabilities, kind="stable")[:5].tolist()
        assert result["labels"][:3] == want[:3]  # the rest tie (0 logits)
        assert result["names"] == [CLASSIFY_NAMES[label] for label in result["labels"]]
        np.testing.assert_allclose(result["scores"], probabilities[result["labels"]], rtol=0, atol=1e-6)
        assert result["scores"] == sorted(result["scores"], reverse=True) and len(result["scores"]) == 5


def test_metadata_from_a_sidecar(models, tmp_path):
    """A file without embedded metadata runs with `<file>.json` beside it; without either it is refused."""
    path = tmp_path / "bare.onnx"
    model = onnx.load(str(models["classify"]))
    del model.metadata_props[:]
    onnx.save(model, str(path))
    with pytest.raises(MetadataError, match=f"no {KEY!r} metadata"):
        load(path)
    write_sidecar(path, metadata("classify"))
    assert sidecar_path(path).is_file() and load(path).task == "classify"


def test_a_plain_onnx_model_is_refused(tmp_path):
    path = plain_classifier(tmp_path / "plain.onnx")
    with pytest.raises(MetadataError, match=r"plain\.onnx: no 'mobilenet_suite' metadata: .*python -m tasks"):
        load(path)


def test_files_that_are_no_model(tmp_path):
    with pytest.raises(InputError, match=r"missing\.onnx: no such file; export one"):
        load(tmp_path / "missing.onnx")
    (tmp_path / "garbage.onnx").write_text("not a model")
    with pytest.raises(InputError, match=r"garbage\.onnx: onnxruntime cannot read it \(.*Protobuf"):
        load(tmp_path / "garbage.onnx")
    (tmp_path / "weights.pt").write_bytes(b"")
    with pytest.raises(InputError, match=r"weights\.pt: the runner opens \.onnx, \.xml files, not '\.pt'"):
        load(tmp_path / "weights.pt")


def test_metadata_the_file_does_not_follow(models, tmp_path):
    """Outputs the metadata promises but the file lacks, an input size it does not have, a resize the task has not."""
    cases = [
        (
            metadata("detect")
            | {
                "postprocess": {
                    "nms": "runner",
                    "score_threshold": 0.1,
                    "iou_threshold": 0.5,
                    "candidates_per_class": 9,
                    "max_detections": 9,
                }
            },
            InputError,
            r"lack \['scores', 'boxes'\]",
        ),
        (metadata("detect", size=[64, 64]), InputError, r"input has shape \[None, 3, 32, 32\] where its metadata"),
        (metadata("detect", resize="none"), MetadataError, r"input.resize = 'none' is not supported"),
        (metadata("detect", batch=0), MetadataError, r"input.batch = 0"),
    ]
    for index, (data, error, message) in enumerate(cases):
        path = tmp_path / f"case{index}.onnx"
        model = onnx.load(str(models["detect"]))
        del model.metadata_props[:]
        onnx.save(model, str(path))
        with pytest.raises(error, match=message):
            load(add_metadata(path, data))


def test_undecodable_and_unknown_inputs(models, tmp_path):
    model = load(models["classify"])
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG broken")
    with pytest.raises(InputError, match=r"image .*bad\.png cannot be decoded"):
        model([bad])
    with pytest.raises(InputError, match=r"image .*nothing\.png: no such file"):
        model([tmp_path / "nothing.png"])
    with pytest.raises(InputError, match=r"images\[0\]: a numpy array must be uint8 H x W x 3"):
        model([np.zeros((4, 4), np.float32)])
