"""Predictors from named weights: an entry served by a loopback HTTP server (a randomly initialised torchvision model
saved by the test, its hash computed here), downloaded once; the predictor applies the entry's preprocessing, names
classes by its categories, and gives what the source model gives on the same preprocessed input."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
import torch.hub
import torchvision
from PIL import Image
from torch import nn
from torchvision.transforms._presets import SemanticSegmentation

from backbones.weights import register_weights, registry
from backbones.weights.categories import COCO_CATEGORIES, IMAGENET_CATEGORIES, VOC_CATEGORIES
from backbones.weights.download import MIRROR_VARIABLE, cache_dir
from tasks.classify import Classifier
from tasks.classify.crop import fit_crop_pct
from tasks.classify.data.transforms import eval_resize_side
from tasks.detect import Detector
from tests.backbones.test_weights_registry import Server, save_hashed
from tests.helpers import assert_parity, randomize_norms, tiny_task, write_checkpoint

HALF = (0.5, 0.5, 0.5)
IMAGENET = {"mean": registry.IMAGENET_MEAN, "std": registry.IMAGENET_STD}


@pytest.fixture(autouse=True)
def hub(tmp_path, monkeypatch):
    """TORCH_HOME in tmp_path, no mirror, and a registry restored after the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.delenv(MIRROR_VARIABLE, raising=False)
    monkeypatch.setattr(registry, "_REGISTRY", {name: dict(tags) for name, tags in registry._REGISTRY.items()})
    return cache_dir()


@pytest.fixture
def served(tmp_path):
    folder = tmp_path / "served"
    folder.mkdir()
    server = Server(folder)
    yield server, folder
    server.stop()


def calibrated(model: nn.Module, run) -> nn.Module:
    """`model` (eval) with batch-norm statistics measured by `run(model)` on noise: realistic activations, so that
    scores and classes differ between images instead of tying."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a plain average
    model.train()
    with torch.no_grad():
        run(model)
    return model.eval()


def noise_images(sizes: list[tuple[int, int]]) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    images = []
    for height, width in sizes:
        ramp = np.linspace(0, 255, width)[None, :, None] * rng.random(3)
        images.append(((rng.integers(0, 256, (height, width, 3)) + ramp) / 2).astype(np.uint8))
    return images


def serve(server: Server, folder, model: nn.Module, name: str, tag: str, **entry):
    path, digest = save_hashed(model, folder, f"{name}_{tag}")
    return register_weights(name, tag, url=f"{server.base}/{path.name}", sha256=digest, **entry), path


# -- the three predictors ------------------------------------------------------------------------------------------
def test_detector_from_named_weights_applies_their_preprocessing_and_categories(served, hub):
    server, folder = served
    reference = torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None)
    calibrated(reference, lambda m: m.head(list(m.backbone(torch.rand(2, 3, 160, 160) * 2 - 1).values())))
    entry, path = serve(
        server, folder, reference, "ssdlite320_v3_large", "test_coco", mean=HALF, std=HALF, image_size=320,
        categories=COCO_CATEGORIES, build_options={"reduced_tail": True},
    )  # fmt: skip

    detector = Detector.from_checkpoint("ssdlite320_v3_large:test_coco")
    assert detector.weights is entry and (hub / path.name).read_bytes() == path.read_bytes()
    preprocessing = {"image_size": 320, "keep_aspect_ratio": False, "mean": HALF, "std": HALF}
    assert detector.preprocessing_arguments == preprocessing
    assert detector.class_names == list(COCO_CATEGORIES) and len(detector.class_names) == 91
    # the entry's normalisation: white is (1 - 0.5) / 0.5 = 1 in every channel (ImageNet's would give 2.2 to 2.6)
    white, _ = detector.prepare(np.full((30, 40, 3), 255, np.uint8))
    assert white.shape == (3, 320, 320)
    torch.testing.assert_close(white, torch.ones_like(white), atol=1e-6, rtol=0)

    images = noise_images([(240, 320), (150, 200)])
    got = detector.predict(images)
    for image, have in zip(images, got, strict=True):
        tensor, meta = detector.prepare(image)
        with torch.no_grad():  # torchvision's SSDLite takes [0, 1] and normalises with 0.5 / 0.5 itself
            theirs = reference([tensor * 0.5 + 0.5])[0]
        height, width = image.shape[:2]
        boxes = theirs["boxes"] * meta["scale"].repeat(2)
        boxes[:, 0::2], boxes[:, 1::2] = boxes[:, 0::2].clamp(0, width), boxes[:, 1::2].clamp(0, height)
        top = 50  # further down, scores tie within float noise (batch norm is folded in the predictor)
        assert len(have["labels"]) >= top
        assert torch.equal(have["labels"][:top], theirs["labels"][:top])
        torch.testing.assert_close(have["scores"][:top], theirs["scores"][:top], atol=1e-4, rtol=0)
        torch.testing.assert_close(have["boxes"][:top], boxes[:top], atol=0.05, rtol=0)
        assert have["names"][:top] == [COCO_CATEGORIES[label] for label in theirs["labels"][:top].tolist()]

    # a bare tag with the backbone names the same entry; the file was downloaded once
    assert Detector.resolve_source("test_coco", backbone="v3_large") is entry
    assert server.requests == [f"/{path.name}"]


def test_segmenter_from_named_weights_resizes_as_their_published_transform(served):
    from tasks.segment import Segmenter

    server, folder = served
    reference = torchvision.models.segmentation.lraspp_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=21
    )
    calibrated(reference, lambda m: m(torch.randn(2, 3, 72, 72)))
    size = 72  # a small evaluation size for the test (torchvision's entries: 520)
    entry, _ = serve(
        server, folder, reference, "lraspp_v3_large", "test_voc", **IMAGENET, image_size=size, resize_size=size,
        categories=VOC_CATEGORIES,
    )  # fmt: skip

    segmenter = Segmenter.from_checkpoint("test_voc", head="lraspp", backbone="v3_large")
    assert segmenter.weights is entry and segmenter.resize_size == size
    assert segmenter.preprocessing_arguments == IMAGENET
    assert segmenter.class_names == list(VOC_CATEGORIES)
    images = noise_images([(90, 120), (50, 40)])  # one shrunk, one enlarged to a shorter side of 72
    published = SemanticSegmentation(resize_size=size)  # what torchvision's weights.transforms() does
    got = segmenter.predict(images)
    for image, have in zip(images, got, strict=True):
        tensor, _ = segmenter.prepare(image)
        torch.testing.assert_close(tensor, published(Image.fromarray(image)), atol=1e-5, rtol=0)
        with torch.no_grad():
            logits = reference(tensor[None])["out"]
            logits = nn.functional.interpolate(logits, size=image.shape[:2], mode="bilinear", align_corners=False)
        expected = logits.argmax(1)[0]
        assert have["mask"].shape == image.shape[:2]
        assert (have["mask"] == expected).float().mean() > 0.999  # pixels at a near tie may flip (folded norms)
        assert len(have["labels"]) > 1 and have["names"] == [VOC_CATEGORIES[i] for i in have["labels"]]


def test_classifier_from_named_weights_crops_as_the_entry_and_names_imagenet_classes(served):
    server, folder = served
    reference = torchvision.models.mobilenet_v3_small(weights=None)
    calibrated(reference, lambda m: m(torch.randn(8, 3, 64, 64)))
    with torch.no_grad():
        reference.classifier[-1].weight.mul_(20.0)  # scores that differ from uniform
    entry, _ = serve(
        server, folder, reference, "v3_small", "test_in1k", **IMAGENET, image_size=64, resize_size=73,
        categories=IMAGENET_CATEGORIES,
    )  # fmt: skip

    classifier = Classifier.from_weights("v3_small", "test_in1k")
    arguments = classifier.preprocessing_arguments
    assert classifier.weights is entry
    assert arguments == {"resolution": 64, "crop_pct": arguments["crop_pct"], "interpolation": "bilinear", **IMAGENET}
    assert eval_resize_side(64, arguments["crop_pct"]) == 73  # the entry's resize, then its 64 px crop
    assert classifier.class_names == list(IMAGENET_CATEGORIES)
    images = noise_images([(80, 100), (120, 90)])
    got = classifier.predict(images)
    for image, have in zip(images, got, strict=True):
        tensor, _ = classifier.prepare(image)
        assert tensor.shape == (3, 64, 64)
        with torch.no_grad():
            scores, labels = reference(tensor[None]).softmax(1).topk(5)
        assert have["labels"] == labels[0].tolist()
        np.testing.assert_allclose(have["scores"], scores[0].numpy(), atol=1e-5, rtol=0)
        assert have["names"] == [IMAGENET_CATEGORIES[i] for i in labels[0].tolist()]


def test_fit_crop_pct_lands_on_the_resize_size():
    for image_size, resize_size in ((224, 256), (224, 232), (33, 54), (64, 73), (520, 520)):
        assert eval_resize_side(image_size, fit_crop_pct(image_size, resize_size)) == resize_size


# -- naming weights --------------------------------------------------------------------------------------------------
def test_weights_sources_are_resolved_or_named_errors(tmp_path):
    assert Detector.resolve_source("coco") is registry.get_weights("ssdlite320_v3_large", "coco")
    assert Detector.resolve_source("ssdlite320_v3_large.coco") is Detector.resolve_source("coco", backbone="v3_large")
    assert Classifier.resolve_source("imagenet", backbone="v1").tag == "timm_ra4_in1k"
    assert Classifier.weights_entry("v3_small") is registry.get_weights("v3_small", "imagenet")
    with pytest.raises(ValueError, match=r"'imagenet' exist for several models, \['v1:imagenet', 'v2:imagenet'.*"):
        Classifier.from_checkpoint("imagenet")
    with pytest.raises(ValueError, match=r"unknown weights 'cocoo' for 'ssdlite320_v3_large'; valid tags.*\['coco'\]"):
        Detector.from_checkpoint("ssdlite320_v3_large:cocoo")
    with pytest.raises(TypeError, match=r"from_checkpoint: unknown arguments \['head'\]; it takes \['backbone'"):
        Detector.from_checkpoint("coco", head="lraspp")
    with pytest.raises(ValueError, match=r"'ssdlite320_v3_large' \('coco'\) are not a classify model's"):
        Classifier.from_weights("ssdlite320_v3_large", "coco")
    with pytest.raises(FileNotFoundError, match=r"coco_voc: no such file.*weights: \['ssdlite320_v3_large:coco'\]"):
        Detector.from_checkpoint("coco_voc")
    with pytest.raises(ValueError, match=r"'ssdlite320_v3_large:coco' are for \{'backbone': 'v3_large'\}, not"):
        Detector.from_checkpoint("ssdlite320_v3_large:coco", backbone="v3_small")


# -- a checkpoint fine-tuned from named weights ----------------------------------------------------------------------
def test_a_checkpoint_without_class_names_takes_the_categories_of_its_initial_weights(tmp_path):
    names = ["__background__", "ant", "bee", "cat", "dog"]
    args = {"url": "http://127.0.0.1:9/five.pth", "sha256": "ab" * 4, "mean": HALF, "std": HALF}
    register_weights("ssdlite320_v3_small", "five", **args, categories=names)
    register_weights("ssdlite320_v3_small", "four", **args, categories=names[:4])
    module, data = tiny_task("detect", tmp_path / "cache")  # 5 classes, no class names recorded
    assert module.hparams.class_names is None
    # the weights need not be here: the checkpoint's state dict is the model
    unnamed = write_checkpoint(tmp_path / "unnamed.ckpt", module, data, weights="five")
    assert Detector.from_checkpoint(unnamed).class_names == names
    other_count = write_checkpoint(tmp_path / "other.ckpt", module, data, weights="four")
    assert Detector.from_checkpoint(other_count).class_names == module.class_names  # ["background", "class_1", ...]
    own = ["bg", "a", "b", "c", "d"]
    named = write_checkpoint(tmp_path / "named.ckpt", module, data, weights="five", class_names=own)
    assert Detector.from_checkpoint(named).class_names == own


def test_a_checkpoint_fine_tuned_from_timm_weights_reloads_with_their_variant_options(tmp_path):
    from tasks.classify.task import ClassificationTask

    source = randomize_norms(timm.create_model("mobilenetv1_100", pretrained=False, num_classes=4))
    torch.save(source.state_dict(), tmp_path / "v1_timm.pth")
    module = ClassificationTask("v1", 4, resolution=64, weights=str(tmp_path / "v1_timm.pth")).eval()
    checkpoint = write_checkpoint(tmp_path / "v1.ckpt", module, None)
    (tmp_path / "v1_timm.pth").unlink()  # as on another machine
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert_parity(Classifier.from_checkpoint(checkpoint).model(x), module.model(x))  # batch norm folded
