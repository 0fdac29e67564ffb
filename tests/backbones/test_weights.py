"""Checkpoints of torchvision and timm, saved from randomly initialised models, give their exact outputs: equal up to
float32 summation order, relative to the outputs' scale (`tests.helpers.assert_parity`)."""

import pytest
import timm
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from backbones import create_backbone, create_classifier
from heads.lraspp import LRASPPHead
from heads.segmentation import SegmentationModel
from heads.ssdlite import SSDLite
from tasks.detect.weights import load_detector_weights
from tasks.segment.weights import load_segmenter_weights
from tests.helpers import assert_parity, randomize_norms, save_state_dict

SOURCES = [
    ("v2", "torchvision", "mobilenet_v2"),
    ("v3_large", "torchvision", "mobilenet_v3_large"),
    ("v3_small", "torchvision", "mobilenet_v3_small"),
    ("v1", "timm", "mobilenetv1_100"),
    ("v2", "timm", "mobilenetv2_100"),
    ("v3_large", "timm", "mobilenetv3_large_100"),
    ("v3_small", "timm", "mobilenetv3_small_100"),
    ("v4_conv_small", "timm", "mobilenetv4_conv_small"),
    ("v4_conv_medium", "timm", "mobilenetv4_conv_medium"),
    ("v4_conv_large", "timm", "mobilenetv4_conv_large"),
    ("v4_hybrid_medium", "timm", "mobilenetv4_hybrid_medium"),
    ("v4_hybrid_large", "timm", "mobilenetv4_hybrid_large"),
]


def reference_model(source: str, arch: str, **kwargs) -> nn.Module:
    if source == "torchvision":
        return randomize_norms(torchvision.models.get_model(arch, weights=None, **kwargs))
    return randomize_norms(timm.create_model(arch, pretrained=False, **kwargs))


def reference_features(model: nn.Module, source: str, name: str, x: torch.Tensor) -> torch.Tensor:
    """The source's last backbone feature map, before any classification layer."""
    if source == "timm":
        return model.blocks(model.bn1(model.conv_stem(x)))
    features = model.features if name != "v2" else model.features[:-1]  # V2's 1280 conv is its head here
    return features(x)


@pytest.mark.parametrize("name, source, arch", SOURCES, ids=[f"{s}-{a}" for _, s, a in SOURCES])
def test_classifier_logits_equal_the_source(tmp_path, name, source, arch):
    reference = reference_model(source, arch)
    path = save_state_dict(reference, tmp_path / f"{arch}.pth")
    ours = create_classifier(name, weights=path).eval()
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        expected, logits = reference(x), ours(x)
    assert expected.abs().max() > 0.01  # a comparison of near-zero outputs would prove nothing
    assert_parity(logits, expected)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in reference.parameters())


def test_narrow_v4_equals_timm(tmp_path):
    """timm's narrow V4 keeps its stem and 1280-channel head at width 1.0; ours at width 0.5 loads its weights."""
    reference = reference_model("timm", "mobilenetv4_conv_small_050")
    path = save_state_dict(reference, tmp_path / "narrow.pth")
    ours = create_classifier("v4_conv_small", width=0.5, weights=path).eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert_parity(ours(x), reference(x))


V3_SOURCES = [row for row in SOURCES if row[0].startswith("v3")]


@pytest.mark.parametrize("name, source, arch", V3_SOURCES, ids=[f"{s}-{a}" for _, s, a in V3_SOURCES])
def test_a_wrong_norm_eps_fails_the_parity_check(tmp_path, name, source, arch):
    """The parity check above tells the source's batch-norm eps from another: V3 built with timm's 1e-5 against
    torchvision's weights (or torchvision's 1e-3 against timm's) gives logits that `assert_parity` rejects."""
    reference = reference_model(source, arch)
    path = save_state_dict(reference, tmp_path / f"{arch}.pth")
    eps = {module.eps for module in reference.modules() if isinstance(module, nn.BatchNorm2d)}
    assert eps == {1e-3 if source == "torchvision" else 1e-5}
    wrong = 1e-5 if source == "torchvision" else 1e-3
    ours = create_classifier(name, weights=path, norm_eps=wrong).eval()
    assert {m.eps for m in ours.modules() if isinstance(m, nn.BatchNorm2d)} == {wrong}
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        expected, logits = reference(x), ours(x)
    with pytest.raises(AssertionError, match="Tensor-likes are not close"):
        assert_parity(logits, expected)


@pytest.mark.parametrize("name, source, arch", SOURCES, ids=[f"{s}-{a}" for _, s, a in SOURCES])
def test_backbone_gets_the_feature_layers(tmp_path, name, source, arch):
    reference = reference_model(source, arch)
    path = save_state_dict(reference, tmp_path / f"{arch}.pth")
    backbone = create_backbone(name, weights=path).eval()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert_parity(backbone(x)[-1], reference_features(reference, source, name, x))


@pytest.mark.parametrize("name, arch", [(n, a) for n, s, a in SOURCES if s == "timm"])
def test_every_tap_equals_timm_features_only(tmp_path, name, arch):
    reference = reference_model("timm", arch)
    path = save_state_dict(reference, tmp_path / f"{arch}.pth")
    features_only = timm.create_model(arch, features_only=True).eval()
    assert not features_only.load_state_dict(reference.state_dict(), strict=False).missing_keys
    backbone = create_backbone(name, weights=path).eval()
    assert backbone.feature_info.channels() == features_only.feature_info.channels()
    assert backbone.feature_info.reduction() == features_only.feature_info.reduction()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        for ours, theirs in zip(backbone(x), features_only(x), strict=True):
            assert_parity(ours, theirs)


@pytest.mark.parametrize(
    "name, arch, kwargs",
    [
        ("v3_large", "mobilenet_v3_large", {"reduced_tail": True}),
        ("v3_small", "mobilenet_v3_small", {"reduced_tail": True}),
        ("v3_large", "mobilenet_v3_large", {"width_mult": 0.75}),
        ("v3_small", "mobilenet_v3_small", {"width_mult": 0.5}),
        ("v2", "mobilenet_v2", {"width_mult": 0.5}),
        ("v2", "mobilenet_v2", {"width_mult": 1.4}),
    ],
)
def test_torchvision_variants_and_widths(tmp_path, name, arch, kwargs):
    reference = reference_model("torchvision", arch, **kwargs)
    path = save_state_dict(reference, tmp_path / "variant.pth")
    options = {k: v for k, v in kwargs.items() if k != "width_mult"}
    ours = create_classifier(name, width=kwargs.get("width_mult", 1.0), weights=path, **options).eval()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert_parity(ours(x), reference(x))


@pytest.mark.parametrize("name, arch", [("v3_large", "mobilenet_v3_large"), ("v3_small", "mobilenet_v3_small")])
def test_output_stride_16_equals_torchvision_dilated(tmp_path, name, arch):
    """torchvision's segmentation backbones: the last stage dilated, reduced tail."""
    dilated = reference_model("torchvision", arch, dilated=True, reduced_tail=True)
    path = save_state_dict(dilated, tmp_path / "dilated.pth")
    backbone = create_backbone(name, output_stride=16, reduced_tail=True, weights=path).eval()
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        expected = dilated.features(x)
        last = backbone(x)[-1]
    assert backbone.feature_info.reduction()[-1] == 16 and expected.shape[-1] == 128 // 16
    assert_parity(last, expected)


@pytest.mark.parametrize(
    "name, arch", [("v3_large", "tf_mobilenetv3_large_minimal_100"), ("v3_small", "tf_mobilenetv3_small_minimal_100")]
)
def test_minimal_variant_has_timm_minimal_structure(tmp_path, name, arch):
    # timm's TF ports pad asymmetrically, so only the structure (every tensor's name and shape) is compared
    path = save_state_dict(timm.create_model(arch), tmp_path / "minimal.pth")
    create_classifier(name, minimal=True, weights=path)  # strict: raises on any difference


def test_own_checkpoints_round_trip(tmp_path):
    classifier = randomize_norms(create_classifier("v3_small"))
    path = save_state_dict(classifier, tmp_path / "classifier.pth")
    reloaded = create_classifier("v3_small", weights=path).eval()
    backbone_path = save_state_dict(create_backbone("v3_small", weights=path), tmp_path / "backbone.pth")
    backbone = create_backbone("v3_small", weights=backbone_path).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(reloaded(x), classifier(x))
        assert torch.equal(backbone(x)[-1], classifier.backbone(x)[-1])


def test_in_chans_adapts_pretrained_stem(tmp_path):
    reference = reference_model("torchvision", "mobilenet_v3_small")
    path = save_state_dict(reference, tmp_path / "rgb.pth")
    gray = create_backbone("v3_small", in_chans=1, weights=path).eval()
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():  # one channel with summed weights == the same image repeated as RGB
        assert_parity(gray(x)[-1], reference.features(x.repeat(1, 3, 1, 1)))
    four = create_backbone("v3_small", in_chans=4, weights=path)
    assert four.stem.conv.weight.shape[1] == 4


def test_mismatched_checkpoint_names_missing_and_unexpected_keys(tmp_path):
    path = save_state_dict(torchvision.models.mobilenet_v3_small(), tmp_path / "small.pth")
    with pytest.raises(RuntimeError, match=r"small.pth \(torchvision format\) does not fit v3_large") as error:
        create_classifier("v3_large", weights=path)
    message = str(error.value)
    assert "missing keys (" in message and "'features.1.block.1.0.weight'" in message
    assert "unexpected keys (" in message and "'features.1.block.1.fc1.weight'" in message
    assert "'features.2.block.0.0.weight: (72, 16, 1, 1) vs ours (64, 16, 1, 1)'" in message


def test_another_class_count_keeps_everything_but_a_new_final_layer(tmp_path, caplog):
    reference = randomize_norms(torchvision.models.mobilenet_v2(num_classes=10))
    path = save_state_dict(reference, tmp_path / "ten.pth")
    with caplog.at_level("WARNING", logger="backbones.weights"):
        ours = create_classifier("v2", num_classes=3, weights=path).eval()
    assert "ten.pth: the final layer has another class count" in caplog.text
    assert "classifier.1.weight (10, 1280) -> head.fc.weight (3, 1280)" in caplog.text
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():  # everything before the final layer is the checkpoint's
        expected = torch.flatten(F.adaptive_avg_pool2d(reference.features(x), 1), 1)
        pooled = torch.flatten(F.adaptive_avg_pool2d(ours.head.conv(ours.backbone(x)[-1]), 1), 1)
    assert_parity(pooled, expected)
    assert ours.head.fc.weight.shape == (3, 1280)
    assert create_backbone("v2", weights=path)  # the backbone ignores the head


def test_a_task_checkpoint_is_read_through_its_model_entries(tmp_path):
    ours = randomize_norms(create_classifier("v3_small", num_classes=5))
    state = {f"model.{k}": v for k, v in ours.state_dict().items()}
    torch.save({"state_dict": {**state, "top1.total": torch.tensor(3)}, "epoch": 2}, tmp_path / "task.ckpt")
    again = create_classifier("v3_small", num_classes=5, weights=tmp_path / "task.ckpt").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(again(x), ours.eval()(x))


def test_torchvision_has_no_v1(tmp_path):
    path = save_state_dict(torchvision.models.mobilenet_v2(), tmp_path / "v2.pth")
    with pytest.raises(ValueError, match="torchvision has no v1 model"):
        create_backbone("v1", weights=path)


def test_unknown_and_unsafe_files_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights file not found: .*absent.pth"):
        create_backbone("v2", weights=tmp_path / "absent.pth")
    torch.save({"fc.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match=r"other.pth: not a MobileNet checkpoint.*first keys: \['fc.weight'\]"):
        create_backbone("v2", weights=tmp_path / "other.pth")
    torch.save({"model": nn.Linear(1, 1)}, tmp_path / "pickled.pth")  # a pickled module: weights_only refuses it
    with pytest.raises(ValueError, match="pickled.pth: cannot be read as a PyTorch checkpoint"):
        create_backbone("v2", weights=tmp_path / "pickled.pth")


def detector(num_classes: int) -> SSDLite:
    return SSDLite(create_backbone("v3_small", out_indices=("c4_expansion", -1)), num_classes)


def segmenter(num_classes: int) -> SegmentationModel:
    backbone = create_backbone("v2", out_indices=("c2", -1), output_stride=16)
    return SegmentationModel(backbone, LRASPPHead(backbone.feature_info.channels(), num_classes))


TASK_MODELS = {"detector": (detector, load_detector_weights), "segmenter": (segmenter, load_segmenter_weights)}


@pytest.mark.parametrize("kind", TASK_MODELS)
def test_task_models_load_ours_from_a_lightning_checkpoint_and_name_misfits(tmp_path, kind):
    build, load = TASK_MODELS[kind]
    model = randomize_norms(build(3))
    path = tmp_path / f"{kind}.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}, "epoch": 1}, path)
    again = build(3)
    load(again, path)
    assert all(torch.equal(value, again.state_dict()[key]) for key, value in model.state_dict().items())
    # another class count fine-tunes: only the head's class layers differ (tests/tasks/*/test_finetune.py) ...
    other = build(5)
    load(other, path)
    class_layers = tuple(f"head.{layer}." for layer in other.head.class_layers)
    differ = {key for key, value in model.state_dict().items() if not torch.equal(value, other.state_dict()[key])}
    assert differ and all(key.startswith(class_layers) for key in differ)
    # ... and any other misfit is the named error
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    state["model.head.extra.0.0.conv.weight" if kind == "detector" else "model.head.cbr.0.weight"] = torch.zeros(7)
    torch.save({"state_dict": state, "epoch": 1}, path)
    with pytest.raises(
        RuntimeError,
        match=rf"(?s){kind}.ckpt does not fit this model .*keys \(0\).*keys \(0\).*mismatches \(1\): \['head\.",
    ):
        load(build(3), path)


@pytest.mark.parametrize("kind", TASK_MODELS)
def test_task_models_refuse_foreign_and_non_tensor_files(tmp_path, kind):
    build, load = TASK_MODELS[kind]
    with pytest.raises(FileNotFoundError, match=f"{kind} weights file not found: .*absent.pth"):
        load(build(3), tmp_path / "absent.pth")
    torch.save({"fc.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match=rf"other.pth: not a {kind} checkpoint of any known format \['torchvision'"):
        load(build(3), tmp_path / "other.pth")
    torch.save({"backbone.stem.conv.weight": torch.zeros(1), "step": 3}, tmp_path / "mixed.pth")
    with pytest.raises(
        ValueError, match=r"mixed.pth: expected a state dict of tensors; non-tensor values \(1\): \['step \(int\)'\]"
    ):
        load(build(3), tmp_path / "mixed.pth")
