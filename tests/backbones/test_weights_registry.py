"""Named weights: the registry's entries, downloads from a loopback HTTP server (no real network), the hub cache,
hash checks, the mirror variable and the offline error."""

from __future__ import annotations

import functools
import hashlib
import http.server
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import cv2
import numpy as np
import pytest
import timm
import torch
import torch.hub
import torchvision
from PIL import Image
from torch import nn

from backbones import create_backbone, create_classifier, list_backbones
from backbones.weights import get_weights, list_weights, register_weights, registry
from backbones.weights.categories import COCO_CATEGORIES, IMAGENET_CATEGORIES, VOC_CATEGORIES
from backbones.weights.download import MIRROR_VARIABLE, cache_dir
from tasks.classify.data.transforms import eval_resize_side
from tasks.detect.model import build_detector
from tasks.detect.weights import load_detector_weights
from tasks.segment.weights import load_segmenter_weights
from tasks.weights import build_model, table
from tests.helpers import QUIET_CPU_TRAINER, assert_parity, randomize_norms

BUILT_IN = list_weights()
IMAGENET = {"mean": registry.IMAGENET_MEAN, "std": registry.IMAGENET_STD, "categories": IMAGENET_CATEGORIES}


# -- fixtures: an isolated hub cache and registry, a loopback server ---------------------------------------------
@pytest.fixture(autouse=True)
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """TORCH_HOME in tmp_path, no mirror, and a registry restored after the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.delenv(MIRROR_VARIABLE, raising=False)
    monkeypatch.setattr(registry, "_REGISTRY", {name: dict(tags) for name, tags in registry._REGISTRY.items()})
    assert cache_dir() == tmp_path / "torch_home" / "hub" / "checkpoints"
    return cache_dir()


class Server:
    """`http.server` on 127.0.0.1 in a thread, serving `folder`, counting the requests per path."""

    def __init__(self, folder: Path) -> None:
        self.requests: list[str] = []
        log = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args) -> None:
                log.append(self.path)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=folder))
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if not self.thread.is_alive():
            return
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    folder = tmp_path / "served"
    folder.mkdir()
    server = Server(folder)
    yield server, folder
    server.stop()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed when the socket is: connections to it are refused


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_hashed(model: nn.Module, folder: Path, stem: str) -> tuple[Path, str]:
    """The model's state dict saved as torch.hub names files, `<stem>-<sha256 prefix>.pth`; returns file, hash."""
    raw = folder / f"{stem}.tmp"
    torch.save(model.state_dict(), raw)
    digest = sha256(raw)
    return raw.rename(folder / f"{stem}-{digest[:8]}.pth"), digest


def source_model(entry) -> nn.Module:
    """The source's own model for an entry, randomly initialised: what its published file is the state dict of."""
    models = torchvision.models
    if entry.name == "ssdlite320_v3_large":
        return models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None)
    if entry.name == "deeplabv3_v3_large":
        return models.segmentation.deeplabv3_mobilenet_v3_large(
            weights=None, weights_backbone=None, num_classes=21, aux_loss=True
        )
    if entry.name == "lraspp_v3_large":
        return models.segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21)
    if entry.source == "timm":
        arch = {"v1": "mobilenetv1_100", "v2": "mobilenetv2_100"}.get(entry.name, f"mobilenet{entry.name}_100")
        if entry.name.startswith("v4_"):
            arch = f"mobilenet{entry.name}"  # timm's V4 names carry no width
        return timm.create_model(arch, pretrained=False)
    return models.get_model(f"mobilenet_{entry.name}", weights=None)


# -- download, cache, hash, mirror, offline -----------------------------------------------------------------------
@pytest.mark.parametrize("source", ["torchvision", "timm"])
def test_download_equals_the_file_and_the_cache_works_offline(served, hub, source):
    server, folder = served
    if source == "torchvision":
        reference, name = torchvision.models.mobilenet_v3_small(weights=None), "v3_small"
    else:
        reference, name = timm.create_model("mobilenetv1_100", pretrained=False), "v1"
    path, digest = save_hashed(randomize_norms(reference), folder, f"test_{source}")
    sha = digest if source == "timm" else digest[:8]  # a full hash, and a published prefix
    register_weights(name, "test", url=f"{server.base}/{path.name}", sha256=sha, **IMAGENET)

    downloaded = create_classifier(name, weights="test").eval()
    direct = create_classifier(name, weights=path).eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(downloaded(x), direct(x))  # the same file, the same model
        assert_parity(direct(x), reference.eval()(x))
    assert (hub / path.name).read_bytes() == path.read_bytes()
    assert server.requests == [f"/{path.name}"]

    server.stop()  # a cached file needs no network
    again = create_backbone(name, weights="test").eval()
    with torch.no_grad():
        assert torch.equal(again(x)[-1], direct.backbone(x)[-1])
    assert server.requests == [f"/{path.name}"]  # nothing downloaded twice


def test_a_wrong_hash_names_both_hashes_and_leaves_nothing_in_the_cache(served, hub):
    server, folder = served
    path, digest = save_hashed(torchvision.models.mobilenet_v3_small(weights=None), folder, "small")
    register_weights("v3_small", "bad", url=f"{server.base}/{path.name}", sha256="0" * 64, **IMAGENET)
    with pytest.raises(RuntimeError, match=f"expected sha256 {'0' * 64}, got {digest}"):
        create_backbone("v3_small", weights="bad")
    assert not hub.exists() or list(hub.iterdir()) == []


def test_a_url_is_downloaded_and_checked_against_the_hash_in_its_name(served, hub):
    server, folder = served
    path, _ = save_hashed(torchvision.models.mobilenet_v3_small(weights=None), folder, "small")
    create_backbone("v3_small", weights=f"{server.base}/{path.name}")
    assert (hub / path.name).is_file()
    forged = folder / "forged-0123abcd.pth"
    forged.write_bytes(path.read_bytes())
    with pytest.raises(RuntimeError, match="expected sha256 0123abcd"):
        create_backbone("v3_small", weights=f"{server.base}/{forged.name}")
    assert not (hub / forged.name).exists()


def test_the_mirror_variable_redirects_and_the_hash_is_still_checked(served, hub, monkeypatch):
    server, folder = served
    path, digest = save_hashed(torchvision.models.mobilenet_v3_small(weights=None), folder, "small")
    nowhere = f"http://127.0.0.1:{closed_port()}/models/{path.name}"
    register_weights("v3_small", "mirrored", url=nowhere, sha256=digest, **IMAGENET)
    register_weights("v3_small", "forged", url=nowhere, sha256="f" * 64, file_name=path.name, **IMAGENET)
    monkeypatch.setenv(MIRROR_VARIABLE, server.base + "/")
    with pytest.raises(RuntimeError, match="expected sha256 f{64}"):
        create_backbone("v3_small", weights="forged")
    assert list(hub.iterdir()) == []
    create_backbone("v3_small", weights="mirrored")
    assert server.requests == [f"/{path.name}"] * 2 and (hub / path.name).is_file()


def test_offline_error_for_a_built_in_entry_names_the_url_and_the_cache_path_quickly(hub, monkeypatch):
    entry = get_weights("ssdlite320_v3_large", "coco")
    mirror = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv(MIRROR_VARIABLE, mirror)
    start = time.monotonic()
    with pytest.raises(ConnectionError) as error:
        build_detector("v3_large", 91, reduced_tail=True, weights="coco")
    assert time.monotonic() - start < 10
    message = str(error.value)
    assert f"{mirror}/ssdlite320_mobilenet_v3_large_coco-a79551df.pth" in message
    assert entry.url in message and f"place it at {hub / entry.cache_name}" in message
    assert not (hub / entry.cache_name).exists()


def test_a_file_placed_in_the_cache_by_hand_is_used_without_network(hub):
    entry = get_weights("ssdlite320_v3_large", "coco")
    source = torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None)
    hub.mkdir(parents=True)
    torch.save(source.state_dict(), hub / entry.cache_name)
    # the random file does not carry the published hash: the cached file is checked and refused by name
    with pytest.raises(RuntimeError, match=re.escape(str(hub / entry.cache_name))):
        build_detector("v3_large", 91, reduced_tail=True, weights="coco")
    digest = sha256(hub / entry.cache_name)
    register_weights(entry.name, "coco", **{**_entry_args(entry), "sha256": digest[:8]}, replace=True)
    named = build_detector("v3_large", 91, reduced_tail=True, weights="coco").state_dict()
    direct = build_detector("v3_large", 91, reduced_tail=True, weights=hub / entry.cache_name).state_dict()
    assert all(torch.equal(named[key], direct[key]) for key in direct)


def _entry_args(entry) -> dict:
    return {
        "url": f"http://127.0.0.1:{closed_port()}/{entry.cache_name}",
        "mean": entry.mean,
        "std": entry.std,
        "image_size": entry.image_size,
        "categories": entry.categories,
        "build_options": entry.build_options,
    }


# -- the built-in entries -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("entry", BUILT_IN, ids=[f"{e.name}-{e.tag}" for e in BUILT_IN])
def test_built_in_entry_is_complete_and_its_architecture_takes_the_source_layout(entry, tmp_path):
    url = urlparse(entry.url)
    assert url.scheme == "https" and url.netloc and entry.cache_name.endswith((".pth", ".bin"))
    if entry.sha256 is None:
        assert entry.source == "timm" and "no hash" in entry.note
    else:
        assert re.fullmatch(r"[0-9a-f]{8,64}", entry.sha256)
        assert entry.cache_name.endswith(f"-{entry.sha256}.pth")  # the prefix the source publishes in its name
    assert len(entry.mean) == len(entry.std) == 3 and all(0 < s < 1 for s in entry.std)
    assert entry.image_size > 0 and entry.interpolation in ("bilinear", "bicubic")
    expected = {"ssdlite320": COCO_CATEGORIES, "deeplabv3": VOC_CATEGORIES, "lraspp": VOC_CATEGORIES}
    assert entry.categories == expected.get(entry.name.split("_")[0], IMAGENET_CATEGORIES)
    assert entry.metrics and entry.metrics_source.startswith(("torchvision.models", "timm"))

    source = source_model(entry)
    path = tmp_path / entry.cache_name
    torch.save(source.state_dict(), path)
    model = build_model(entry)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in source.parameters())
    if entry.name in list_backbones():
        create_classifier(entry.name, len(entry.categories), weights=path)
    else:
        loader = load_detector_weights if entry.name.startswith("ssdlite") else load_segmenter_weights
        loader(model, path)


def test_imagenet_is_the_default_tag_of_every_backbone_and_its_best_hash_checked_top1():
    for name in list_backbones():
        default = get_weights(name, "imagenet")
        entries = list_weights(name)
        checked = [e for e in entries if e.sha256] or entries  # unchecked only where a backbone has nothing else
        best = max(checked, key=lambda e: e.metrics["ImageNet-1k top-1"])
        assert default is best, name
    assert get_weights("v3_large", "imagenet").sha256
    assert get_weights("ssdlite320_v3_large", "coco").metrics["COCO val2017 box AP"] == 21.3
    assert get_weights("ssdlite320_v3_large", "coco").mean == (0.5, 0.5, 0.5)


def test_the_table_lists_every_entry_with_its_parameter_count():
    text = table(list_weights("v3_small"))
    assert "| v3_small | torchvision_v1 (= imagenet) | torchvision | 2,542,856 | ImageNet-1k top-1 67.668" in text
    assert text.splitlines()[2].endswith(" | sha256 047dcff4 |")


def test_the_unhashed_v1_default_is_marked_unverified():
    entry = get_weights("v1", "imagenet")  # timm's HF-hub-only file: v1's only published ImageNet weights
    assert not entry.verified and entry.note.startswith("unverified:")
    assert all(e.note.startswith("unverified:") for e in BUILT_IN if not e.verified)
    row = table([entry])
    assert "| v1 | timm_ra4_in1k (= imagenet) | timm |" in row
    assert row.endswith("| **unverified** (no published hash) |")


def test_an_unverified_download_logs_the_hash_that_pins_it(served, hub, caplog):
    server, folder = served
    path, digest = save_hashed(torchvision.models.mobilenet_v3_small(weights=None), folder, "unhashed")
    args = {"url": f"{server.base}/{path.name}", "file_name": "unhashed.pth", **IMAGENET}
    register_weights("v3_small", "unhashed", sha256=None, note="unverified: a test file", **args)
    create_backbone("v3_small", weights="unhashed")
    assert f"without a hash check (none is published); its sha256 is {digest}" in caplog.text
    assert f"register_weights(..., sha256='{digest}', replace=True)" in caplog.text
    register_weights("v3_small", "unhashed", sha256=digest, replace=True, **args)  # pinned: the cached file checks
    create_backbone("v3_small", weights="unhashed")
    assert server.requests == [f"/{path.name}"]


# -- bad input ----------------------------------------------------------------------------------------------------
def test_an_unknown_tag_lists_the_valid_tags():
    with pytest.raises(ValueError, match=r"unknown weights 'imagenett' for 'v3_large'.*'torchvision_v2'.*'imagenet'"):
        create_backbone("v3_large", weights="imagenett")
    with pytest.raises(ValueError, match=r"valid tags for 'lraspp_v3_large': \['coco_voc'\]"):
        from tasks.segment.model import build_segmenter

        build_segmenter("v3_large", "lraspp", 21, weights="coco")
    with pytest.raises(FileNotFoundError, match="weights file not found: missing/file.pth"):
        create_backbone("v3_large", weights="missing/file.pth")


def test_weights_of_another_architecture_name_the_keys(served):
    """(Another class count fine-tunes: the class layers are replaced, tests/tasks/*/test_finetune.py.)"""
    server, folder = served
    path, digest = save_hashed(torchvision.models.mobilenet_v2(weights=None), folder, "v2")
    register_weights("v3_large", "wrong", url=f"{server.base}/{path.name}", sha256=digest, **IMAGENET)
    with pytest.raises(RuntimeError, match=r"(?s)does not fit v3_large.*missing keys \(\d+\): \['features"):
        create_backbone("v3_large", weights="wrong")
    detector, _ = save_hashed(
        torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None), folder, "ssd"
    )
    with pytest.raises(RuntimeError, match=r"shape mismatches \(\d+\): \['features.13.block.3.0.weight: \(80, "):
        build_detector("v3_large", 91, reduced_tail=False, weights=detector)  # the reduced tail has half the channels


def test_a_truncated_download_names_the_file(served, hub):
    server, folder = served
    path, _ = save_hashed(torchvision.models.mobilenet_v3_small(weights=None), folder, "small")
    truncated = folder / "truncated.pth"
    truncated.write_bytes(path.read_bytes()[:5000])
    register_weights("v3_small", "cut", url=f"{server.base}/truncated.pth", sha256=sha256(truncated), **IMAGENET)
    with pytest.raises(ValueError, match=re.escape(f"{hub / 'truncated.pth'}: cannot be read as a PyTorch checkpoint")):
        create_backbone("v3_small", weights="cut")


def test_register_weights_refuses_incomplete_entries():
    args = {"mean": (0.5,) * 3, "std": (0.5,) * 3}
    with pytest.raises(ValueError, match="url must be an http"):
        register_weights("v2", "x", url="weights.pth", sha256="ab" * 4, **args)
    with pytest.raises(ValueError, match="sha256 must be 8 to 64 hex digits"):
        register_weights("v2", "x", url="https://a.b/c.pth", sha256="xyz", **args)
    with pytest.raises(ValueError, match="sha256=None needs a note"):
        register_weights("v2", "x", url="https://a.b/c.pth", sha256=None, **args)
    with pytest.raises(ValueError, match=r"already has weights \['imagenet'\]"):
        register_weights("v2", "y", url="https://a.b/c.pth", sha256="ab" * 4, aliases=("imagenet",), **args)


# -- the CLI takes the preprocessing from the weights --------------------------------------------------------------
def _detector_entry(hub: Path, tag: str) -> Path:
    """SSDLite-v3_small (width 0.5) weights for the synthetic data's classes, placed in the hub cache and
    registered as `tag` with the preprocessing of the built-in SSDLite-COCO entry (0.5/0.5, 320 px)."""
    from tasks.detect.data.synthetic import SHAPE_NAMES

    hub.mkdir(parents=True, exist_ok=True)
    path = hub / f"ssdlite_small_{tag}.pth"
    torch.save(build_detector("v3_small", len(SHAPE_NAMES) + 1, width=0.5).state_dict(), path)
    coco = get_weights("ssdlite320_v3_large", "coco")
    args = {**_entry_args(coco), "url": f"http://127.0.0.1:{closed_port()}/{path.name}", "build_options": {}}
    register_weights("ssdlite320_v3_small", tag, **args, sha256=sha256(path))
    return path


CLI_ARGS = ["--backbone", "v3_small", "--width", "0.5", "--data.batch_size", "2", "--data.num_workers", "0"]
CLI_ARGS += QUIET_CPU_TRAINER


def _validate(tmp_path: Path, *args: str):
    from tasks.detect.task import main

    data = ["--data.cache_dir", str(tmp_path / "data"), "--data.synthetic_val_images", "2"]
    data += ["--data.synthetic_train_images", "2", "--data.synthetic_image_size", "64"]
    return main(["validate", *CLI_ARGS, *data, "--trainer.default_root_dir", str(tmp_path), *args])


def test_the_cli_takes_mean_std_and_size_from_the_named_weights(tmp_path, hub):
    _detector_entry(hub, "coco_like")
    cli = _validate(tmp_path, "--model.weights", "coco_like")
    assert tuple(cli.datamodule.mean) == (0.5, 0.5, 0.5) and tuple(cli.datamodule.std) == (0.5, 0.5, 0.5)
    assert cli.datamodule.image_size == 320 and cli.model.hparams.image_size == 320


def test_an_explicit_setting_that_contradicts_the_weights_wins_with_a_warning(tmp_path, hub, caplog):
    _detector_entry(hub, "coco_like")
    cli = _validate(tmp_path, "--model.weights", "coco_like", "--data.mean", "[0.4,0.4,0.4]")
    assert tuple(cli.datamodule.mean) == (0.4, 0.4, 0.4) and tuple(cli.datamodule.std) == (0.5, 0.5, 0.5)
    assert re.search(
        r"--data.mean .0.4, 0.4, 0.4. contradicts the weights 'coco_like' of ssdlite320_v3_small", caplog.text
    )
    assert "(mean [0.5, 0.5, 0.5]); keeping --data.mean" in caplog.text


def test_predict_with_named_weights_alone_names_classes_by_their_categories(tmp_path, hub):
    from tasks.detect.task import main

    path = _detector_entry(hub, "coco_like")
    categories = ("__background__", "ring", "box", "wedge", "plus")
    entry = get_weights("ssdlite320_v3_small", "coco_like")
    args = {**_entry_args(entry), "url": entry.url, "build_options": {}, "categories": categories}
    register_weights("ssdlite320_v3_small", "named_classes", **args, sha256=sha256(path), replace=True)
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(images / "a.jpg")
    predict = ["predict", *CLI_ARGS, "--model.weights", "named_classes", "--data.predict_root", str(images)]
    cli = main([*predict, "--trainer.default_root_dir", str(tmp_path)])
    assert cli.model.class_names == list(categories) and cli.datamodule.class_names == list(categories)


def test_the_classification_cli_takes_crop_and_interpolation_from_the_named_weights(tmp_path, hub):
    """timm-style weights (bicubic, resized to 73 before a 64 px crop) bring their resize, crop and interpolation,
    which the evaluation transform then applies."""
    from tasks.classify.task import main

    hub.mkdir(parents=True, exist_ok=True)
    path = hub / "v3_small_bicubic.pth"
    torch.save(torchvision.models.mobilenet_v3_small(weights=None, num_classes=8).state_dict(), path)
    url = f"http://127.0.0.1:{closed_port()}/{path.name}"
    register_weights(
        "v3_small", "bicubic_like", url=url, sha256=sha256(path), mean=(0.5,) * 3, std=(0.5,) * 3, image_size=64,
        resize_size=73, interpolation="bicubic",
    )  # fmt: skip
    data = ["--data.cache_dir", str(tmp_path / "data"), "--data.synthetic_train_images", "8"]
    data += ["--data.synthetic_val_images", "8", "--data.batch_size", "4", "--data.num_workers", "0"]
    cli = main(
        ["validate", "--backbone", "v3_small", "--model.weights", "bicubic_like", *data, *QUIET_CPU_TRAINER]
        + ["--trainer.default_root_dir", str(tmp_path)]
    )
    data_module = cli.datamodule
    assert data_module.interpolation == "bicubic" and data_module.resolution == 64
    assert eval_resize_side(64, data_module.crop_pct) == 73
    transform = data_module.eval_transform()
    image = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    resized = cv2.resize(image, (97, 73), interpolation=cv2.INTER_CUBIC)  # shorter side 73
    crop = resized[4:68, 16:80].astype(np.float32) / 255.0
    expected = torch.from_numpy((crop - 0.5) / 0.5).permute(2, 0, 1)
    torch.testing.assert_close(transform(image), expected, atol=1e-5, rtol=0)
