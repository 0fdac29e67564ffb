import pytest

from backbones import create_backbone, create_classifier, get_spec, list_backbones, variant_options


def test_registry_lists_the_family():
    assert {"v1", "v2", "v3_large", "v3_small"} <= set(list_backbones())


@pytest.mark.parametrize("factory", [create_backbone, create_classifier])
def test_unknown_name_lists_valid_names(factory):
    with pytest.raises(ValueError, match=r"unknown backbone 'v4'.*'v1', 'v2', 'v3_large', 'v3_small'"):
        factory("v4")


def test_unknown_option_lists_valid_options():
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['reduced_tail'\].*valid options: \['norm_eps'\]"):
        create_backbone("v2", reduced_tail=True)


@pytest.mark.parametrize("name", ["v3_large", "v3_small"])
def test_v3_options(name):
    assert {"reduced_tail", "minimal"} <= set(variant_options(name))
    minimal = get_spec(name, minimal=True)
    assert all(not b.squeeze_excite and b.activation == "relu" and b.kernel <= 3 for b in minimal.blocks)
    assert minimal.stem_activation == "relu" and minimal.classifier.activation == "relu"


@pytest.mark.parametrize(
    "name, c4_expansion, tail", [("v3_large", 672, [80, 80, 80, 480]), ("v3_small", 288, [48, 48, 48, 288])]
)
def test_reduced_tail_halves_after_c4_but_keeps_c4_expansion(name, c4_expansion, tail):
    spec = get_spec(name, reduced_tail=True)
    assert [b.out_channels for b in spec.blocks[-4:]] == tail
    assert spec.blocks[-4].expanded_channels == c4_expansion
    assert spec.classifier.hidden_channels == get_spec(name).classifier.hidden_channels // 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"width": 0}, "width must be positive"),
        ({"output_stride": 4}, r"output_stride must be one of \(8, 16, 32\)"),
        ({"in_chans": 0}, "in_chans must be at least 1"),
        ({"out_indices": (5,)}, r"out_indices entry 5 is out of range.*c4_expansion"),
        ({"out_indices": ("c5",)}, r"has no tap 'c5'"),
        ({"out_indices": (1, 1)}, "same tap twice"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        create_backbone("v3_large", **kwargs)
