"""Our backbones as segmentation_models_pytorch encoders: smp's models build, train and load local weights."""

from collections.abc import Iterator

import pytest
import segmentation_models_pytorch as smp
import timm
import torch
import torchvision
from segmentation_models_pytorch.encoders import encoders as smp_encoders
from segmentation_models_pytorch.encoders import get_encoder
from segmentation_models_pytorch.encoders.mobilenet import MobileNetV2Encoder

from backbones import create_backbone, list_backbones
from backbones.weights import adapt_input_channels
from interop.smp import (
    ENCODER_WIDTHS,
    MobileNetSuiteEncoder,
    encoder_name,
    list_encoders,
    load_encoder_weights,
    register_encoder,
)
from tests.helpers import randomize_norms, save_state_dict

SIZE = 64
WIDTH = 0.5  # every backbone is registered at it; enough to exercise each architecture cheaply
ARCHS = {
    "unet": (smp.Unet, {}),
    "fpn": (smp.FPN, {}),
    "deeplabv3_os8": (smp.DeepLabV3, {"encoder_output_stride": 8, "decoder_channels": 64}),
    "deeplabv3_os16": (smp.DeepLabV3, {"encoder_output_stride": 16, "decoder_channels": 64}),
    "deeplabv3plus_os8": (smp.DeepLabV3Plus, {"encoder_output_stride": 8, "decoder_channels": 64}),
    "deeplabv3plus_os16": (smp.DeepLabV3Plus, {"encoder_output_stride": 16, "decoder_channels": 64}),
}


@pytest.fixture
def temporary_name() -> Iterator[str]:
    """An encoder name registered by the test and removed afterwards, so smp's table stays as imported."""
    name = "mobilenet_suite_test_encoder"
    yield name
    smp_encoders.pop(name, None)


def scaled_diff(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """The largest difference relative to the reference's largest magnitude (not floored at 1: small outputs count)."""
    return (ours - reference).abs().max().item() / reference.abs().max().item()


def test_names_follow_the_documented_scheme():
    assert encoder_name("v3_large") == "mobilenet_suite_v3_large"
    assert encoder_name("v3_large", 0.75) == "mobilenet_suite_v3_large_075"
    assert encoder_name("v1", 0.25) == "mobilenet_suite_v1_025"
    assert encoder_name("v2", 1.4) == "mobilenet_suite_v2_140"
    expected = {encoder_name(b, w) for b, widths in ENCODER_WIDTHS.items() for w in widths}
    assert set(list_encoders()) == expected
    assert set(ENCODER_WIDTHS) == set(list_backbones())
    assert {"mobilenet_suite_v1_025", "mobilenet_suite_v2_140", "mobilenet_suite_v3_small_050"} <= expected
    assert all(name in smp.encoders.get_encoder_names() for name in expected)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("backbone", list_backbones())
def test_smp_models_train_with_every_backbone(backbone, arch):
    model_class, options = ARCHS[arch]
    model = model_class(encoder_name(backbone, WIDTH), encoder_weights=None, classes=3, **options)
    masks = model(torch.randn(2, 3, SIZE, SIZE))
    assert masks.shape == (2, 3, SIZE, SIZE)
    masks.square().mean().backward()
    stem_grad = model.encoder.backbone.stem.conv.weight.grad
    assert stem_grad is not None and stem_grad.abs().sum() > 0
    assert model.encoder.output_stride == options.get("encoder_output_stride", 32)


def assert_features_match_declaration(encoder: MobileNetSuiteEncoder, output_stride: int) -> None:
    with torch.no_grad():
        features = encoder.eval()(torch.randn(1, 3, SIZE, SIZE))
    assert encoder.reductions == [min(2**i, output_stride) for i in range(6)]
    assert [SIZE // f.shape[-1] for f in features] == encoder.reductions
    assert [f.shape[1] for f in features] == encoder.out_channels
    assert encoder.output_stride == output_stride


@pytest.mark.parametrize("name", sorted(list_encoders()))
def test_every_name_gives_its_width_and_declared_features(name):
    encoder = get_encoder(name)
    backbone, width = (smp_encoders[name]["params"][key] for key in ("backbone", "width"))
    assert name == encoder_name(backbone, width)
    assert encoder.out_channels == [3, *create_backbone(backbone, width=width).feature_info.channels()]
    assert_features_match_declaration(encoder, 32)


@pytest.mark.parametrize("output_stride", [16, 8])
@pytest.mark.parametrize("backbone", list_backbones())
def test_dilated_features_match_declaration(backbone, output_stride):
    assert_features_match_declaration(
        get_encoder(encoder_name(backbone, WIDTH), output_stride=output_stride), output_stride
    )


def test_shallow_encoder_and_other_input_channels():
    model = smp.Unet(
        "mobilenet_suite_v3_small", encoder_weights=None, encoder_depth=3, decoder_channels=(32, 16, 8), in_channels=4
    )
    x = torch.randn(2, 4, SIZE, SIZE)
    assert model(x).shape == (2, 1, SIZE, SIZE)
    features = model.encoder(x)
    assert [f.shape[1] for f in features] == model.encoder.out_channels == [4, 16, 16, 24]
    assert [SIZE // f.shape[-1] for f in features] == [1, 2, 4, 8]
    assert model.encoder.output_stride == 8
    with pytest.raises(ValueError, match="depth must be in"):
        get_encoder("mobilenet_suite_v2", depth=6)


def test_make_dilated_keeps_weights():
    encoder = get_encoder("mobilenet_suite_v2_050")
    state = {k: v.clone() for k, v in encoder.backbone.state_dict().items()}
    encoder.make_dilated(8)
    assert encoder.reductions == [1, 2, 4, 8, 8, 8]
    assert all(torch.equal(v, state[k]) for k, v in encoder.backbone.state_dict().items())
    with pytest.raises(ValueError, match=r"output_stride must be one of \(8, 16\)"):
        encoder.make_dilated(32)


def test_registered_torchvision_checkpoint_loads_at_build(tmp_path, temporary_name):
    reference = randomize_norms(torchvision.models.mobilenet_v3_large())
    path = save_state_dict(reference, tmp_path / "mobilenet_v3_large.pth")
    register_encoder(temporary_name, "v3_large", 1.0, weights=path)
    model = smp.DeepLabV3(temporary_name, encoder_weights=None, encoder_output_stride=16).eval()
    stem = model.encoder.backbone.stem.conv.weight
    assert torch.equal(stem, reference.features[0][0].weight)
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        stride_16 = model.encoder(x)[4]
        expected = reference.features[:13](x)  # torchvision's last stride-16 block
    assert expected.abs().max() > 0.01
    assert scaled_diff(stride_16, expected) <= 1e-5

    # a grey-scale model adapts the loaded RGB stem as smp does for its pretrained encoders
    grey = smp.Unet(temporary_name, encoder_weights=None, in_channels=1)
    expected_stem = adapt_input_channels(reference.features[0][0].weight, 1)
    assert torch.equal(grey.encoder.backbone.stem.conv.weight, expected_stem)


def test_load_encoder_weights_copies_our_checkpoint_in_place(tmp_path):
    source = randomize_norms(create_backbone("v2", width=WIDTH))
    path = save_state_dict(source, tmp_path / "v2_050.pth")
    model = smp.FPN("mobilenet_suite_v2_050", encoder_weights=None)
    stem = model.encoder.backbone.stem.conv.weight
    load_encoder_weights(model, path)
    assert model.encoder.backbone.stem.conv.weight is stem
    loaded = model.encoder.backbone.state_dict()
    assert loaded.keys() == source.state_dict().keys()
    assert all(torch.equal(loaded[k], v) for k, v in source.state_dict().items())


def test_load_encoder_weights_applies_timm_parity_settings(tmp_path):
    reference = randomize_norms(timm.create_model("mobilenetv3_large_100", pretrained=False))
    path = save_state_dict(reference, tmp_path / "mobilenetv3_large_100.pth")
    model = smp.Unet("mobilenet_suite_v3_large", encoder_weights=None).eval()
    assert model.encoder.backbone.spec.norm_eps != 1e-5  # the default differs from timm's
    load_encoder_weights(model, path)
    assert model.encoder.backbone.spec.norm_eps == 1e-5
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        ours = model.encoder(x)[-1]
        expected = reference.blocks(reference.bn1(reference.conv_stem(x)))
    assert expected.abs().max() > 0.01
    assert scaled_diff(ours, expected) <= 1e-5


def test_smp_own_mobilenet_v2_still_builds():
    assert smp_encoders["mobilenet_v2"]["encoder"] is MobileNetV2Encoder
    model = smp.Unet("mobilenet_v2", encoder_weights=None, classes=2)
    assert isinstance(model.encoder, MobileNetV2Encoder)
    assert model(torch.randn(1, 3, SIZE, SIZE)).shape == (1, 2, SIZE, SIZE)


def test_clear_errors(tmp_path, temporary_name):
    with pytest.raises(KeyError, match="Wrong encoder name `mobilenet_suite_v9`.*mobilenet_suite_v3_large"):
        smp.Unet("mobilenet_suite_v9", encoder_weights=None)
    with pytest.raises(KeyError, match="Wrong pretrained weights `imagenet`"):
        smp.Unet("mobilenet_suite_v2")  # smp's default encoder_weights names a hub download we do not have
    with pytest.raises(ValueError, match=r"unknown backbone 'v9'; valid names: \['v1', 'v2'"):
        register_encoder(temporary_name, "v9")
    with pytest.raises(ValueError, match="smp already has an encoder named 'mobilenet_v2'"):
        register_encoder("mobilenet_v2", "v2")
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        register_encoder(temporary_name, "v2", weights=tmp_path / "missing.pth")
    with pytest.raises(TypeError, match="got MobileNetV2Encoder"):
        load_encoder_weights(smp.Unet("mobilenet_v2", encoder_weights=None), tmp_path / "missing.pth")
    assert temporary_name not in smp_encoders
    assert isinstance(get_encoder("mobilenet_suite_v1_025"), MobileNetSuiteEncoder)
