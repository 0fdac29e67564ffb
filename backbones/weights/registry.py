"""Named weights: one entry per published checkpoint, with its URL, hash, preprocessing, categories and metrics.

As torchvision's `Weights` (URL + transforms + meta) and timm's `pretrained_cfg`, an entry is data. The built-in
entries below use the same public `register_weights` call that a team uses for its own hosted checkpoints.
The backbones' ImageNet entries are registered below; each task registers its own models' entries
(`tasks/<task>/weights.py`). An entry's `name` is a registered model name (`tasks.list_models()`).
`weights=` arguments take a tag of this registry, a URL or a local path; `resolve.py` turns any of the three
into a local file (downloaded into torch's hub cache by `download.py`) that the loaders in `loaders.py` read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from backbones.weights.categories import IMAGENET_CATEGORIES

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
DEFAULT_TAG = "imagenet"  # every backbone's default: its best published top-1 that loads with exact parity and whose
# download is hash-checked; an unverified entry (no published hash) only where a backbone has no other: v1, whose
# only published ImageNet file is timm's HF-hub-only `mobilenetv1_100.ra4_e3600_r224_in1k`
_HEX = re.compile(r"[0-9a-f]{8,64}")
TORCHVISION_MODELS = "https://download.pytorch.org/models/"
_TV_CLASSIFY = "https://github.com/pytorch/vision/tree/main/references/classification"
TORCHVISION_META = "torchvision.models.{} (torchvision 0.29 weights meta)"
_TIMM_RESULTS = "https://github.com/huggingface/pytorch-image-models/blob/main/results/results-imagenet.csv"
_TIMM_RELEASE = "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/"


@dataclass(frozen=True)
class WeightsEntry:
    """One published checkpoint. `sha256` is the full hash or the prefix the source publishes in its file name
    (torch.hub's convention); None only where the source publishes none (`note` says so)."""

    name: str  # a backbone ("v3_large") or a task model ("ssdlite320_v3_large", "deeplabv3_v3_large")
    tag: str
    url: str
    sha256: str | None
    source: str  # "torchvision", "timm", or a team's own name
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    image_size: int  # the network's input (the centre crop for classifiers)
    resize_size: int | None  # the shorter side before the crop (classifiers) or at evaluation (segmenters)
    interpolation: str
    categories: tuple[str, ...]
    metrics: Mapping[str, float] = field(default_factory=dict)
    metrics_source: str = ""
    file_name: str = ""  # the cache file's name (also fetched from a mirror); default: the URL's last part
    aliases: tuple[str, ...] = ()
    build_options: Mapping[str, Any] = field(default_factory=dict)  # what the architecture needs to load it
    note: str = ""

    @property
    def verified(self) -> bool:
        """Whether the download is checked against a published hash (False: the source publishes none)."""
        return self.sha256 is not None

    @property
    def cache_name(self) -> str:
        return self.file_name or Path(urlparse(self.url).path).name

    @property
    def preprocessing(self) -> dict[str, Any]:
        return {
            "mean": self.mean,
            "std": self.std,
            "image_size": self.image_size,
            "resize_size": self.resize_size,
            "interpolation": self.interpolation,
        }


_REGISTRY: dict[str, dict[str, WeightsEntry]] = {}


def register_weights(
    name: str,
    tag: str,
    *,
    url: str,
    sha256: str | None,
    mean: Sequence[float],
    std: Sequence[float],
    image_size: int = 224,
    resize_size: int | None = None,
    interpolation: str = "bilinear",
    categories: Sequence[str] | None = None,
    metrics: Mapping[str, float] | None = None,
    metrics_source: str = "",
    source: str = "custom",
    file_name: str = "",
    aliases: Sequence[str] = (),
    build_options: Mapping[str, Any] | None = None,
    note: str = "",
    replace: bool = False,
) -> WeightsEntry:
    """Register a hosted checkpoint as `weights=tag` for `name`; `sha256=None` only with a `note` saying why."""
    where = f"register_weights({name!r}, {tag!r})"
    scheme = urlparse(url)
    if scheme.scheme not in ("http", "https", "file") or not (scheme.netloc or scheme.scheme == "file"):
        raise ValueError(f"{where}: url must be an http(s):// or file:// URL, got {url!r}")
    if sha256 is not None and not _HEX.fullmatch(sha256.lower()):
        raise ValueError(f"{where}: sha256 must be 8 to 64 hex digits (a full hash or a prefix), got {sha256!r}")
    if sha256 is None and not note:
        raise ValueError(f"{where}: sha256=None needs a note saying why no hash is published")
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(f"{where}: mean and std need 3 values (std > 0), got {mean!r}, {std!r}")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"{where}: interpolation {interpolation!r}; valid: {INTERPOLATIONS}")
    tags = _REGISTRY.setdefault(name, {})
    taken = [key for key in (tag, *aliases) if key in tags]
    if taken and not replace:
        raise ValueError(f"{where}: {name!r} already has weights {taken}; pass replace=True to replace them")
    entry = WeightsEntry(
        name=name,
        tag=tag,
        url=url,
        sha256=None if sha256 is None else sha256.lower(),
        source=source,
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        image_size=int(image_size),
        resize_size=resize_size,
        interpolation=interpolation,
        categories=tuple(categories or ()),
        metrics=dict(metrics or {}),
        metrics_source=metrics_source,
        file_name=file_name,
        aliases=tuple(aliases),
        build_options=dict(build_options or {}),
        note=note,
    )
    for key in (tag, *aliases):
        tags[key] = entry
    return entry


def list_weights(name: str | None = None) -> list[WeightsEntry]:
    """Every registered entry (each once, aliases folded in), or those of `name`."""
    names = [name] if name is not None else list(_REGISTRY)
    entries: list[WeightsEntry] = []
    for key in names:
        for entry in _REGISTRY.get(key, {}).values():
            if entry not in entries:
                entries.append(entry)
    return entries


def weights_names() -> list[str]:
    """Every name that has registered weights (backbones and task models), in registration order."""
    return list(_REGISTRY)


def weights_tags(name: str) -> list[str]:
    """The valid `weights=` tags (aliases included) for `name`."""
    return list(_REGISTRY.get(name, {}))


def get_weights(name: str, tag: str) -> WeightsEntry:
    """The entry named `tag` (or one of its aliases) for `name`; an unknown tag lists the valid ones."""
    tags = _REGISTRY.get(name, {})
    if tag not in tags:
        known = sorted(_REGISTRY)
        valid = f"valid tags for {name!r}: {list(tags)}" if tags else f"{name!r} has no named weights; names: {known}"
        raise ValueError(f"unknown weights {tag!r} for {name!r}; {valid} (or pass a URL or a local file)")
    return tags[tag]


def find_weights(name: str, weights: str | Path | None) -> WeightsEntry | None:
    """The entry that `weights` names for `name` (one of its tags, or a registered URL), without downloading."""
    if not isinstance(weights, str):
        return None
    if weights in _REGISTRY.get(name, {}):
        return _REGISTRY[name][weights]
    return next((entry for entry in list_weights() if entry.url == weights), None)


# -- built-in entries ------------------------------------------------------------------------------------------
def _torchvision_classifier(name: str, tag: str, file: str, top1: float, top5: float, resize: int, **kw: Any) -> None:
    register_weights(
        name,
        tag,
        url=TORCHVISION_MODELS + file,
        sha256=file.rsplit("-", 1)[1].split(".")[0],
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        image_size=224,
        resize_size=resize,
        interpolation="bilinear",
        categories=IMAGENET_CATEGORIES,
        metrics={"ImageNet-1k top-1": top1, "ImageNet-1k top-5": top5},
        source="torchvision",
        **kw,
    )


def _timm_classifier(
    name: str,
    tag: str,
    url: str,
    sha256: str | None,
    top1: float,
    top5: float,
    crop_pct: float,
    image_size: int = 224,
    **kw: Any,
) -> None:
    register_weights(
        name,
        tag,
        url=url,
        sha256=sha256,
        image_size=image_size,
        resize_size=int(image_size / crop_pct),  # timm's floor(size / crop_pct)
        interpolation="bicubic",
        categories=IMAGENET_CATEGORIES,
        metrics={"ImageNet-1k top-1": top1, "ImageNet-1k top-5": top5},
        metrics_source=f"timm results-imagenet.csv at {image_size} px, crop_pct {crop_pct}: {_TIMM_RESULTS}",
        source="timm",
        **kw,
    )


def _hf_bin(model: str) -> str:
    return f"https://huggingface.co/timm/{model}/resolve/main/pytorch_model.bin"


_ALSO_HF = "timm's original release file (hash prefix in its name); also on the HF hub as timm/{}"
_NO_HF_HASH = (
    "unverified: timm publishes this checkpoint only on the Hugging Face hub, with no hash in its pretrained_cfg or "
    "file name (the Hub's LFS sha256 is not recorded here), so it is downloaded without a hash check; the download "
    "logs the file's sha256, which `register_weights(..., sha256=<it>, replace=True)` pins"
)

_timm_classifier(
    "v1", "timm_ra4_in1k", _hf_bin("mobilenetv1_100.ra4_e3600_r224_in1k"), None, 75.388, 92.310, 0.875,
    mean=HALF, std=HALF, file_name="mobilenetv1_100.ra4_e3600_r224_in1k.bin", aliases=(DEFAULT_TAG,), note=_NO_HF_HASH,
)  # fmt: skip
_NEW_RECIPE = "https://github.com/pytorch/vision/issues/3995#new-recipe-with-reg-tuning"
_V3_RECIPE = f"{_TV_CLASSIFY}#mobilenetv3-large--small"
for _name, _tag, _file, _top1, _top5, _resize, _weights, _recipe in (
    ("v2", "torchvision_v1", "mobilenet_v2-b0353104.pth", 71.878, 90.286, 256, "MobileNet_V2_Weights.IMAGENET1K_V1",
     f"{_TV_CLASSIFY}#mobilenetv2"),
    ("v2", "torchvision_v2", "mobilenet_v2-7ebf99e0.pth", 72.154, 90.822, 232, "MobileNet_V2_Weights.IMAGENET1K_V2",
     _NEW_RECIPE),
    ("v3_large", "torchvision_v1", "mobilenet_v3_large-8738ca79.pth", 74.042, 91.340, 256,
     "MobileNet_V3_Large_Weights.IMAGENET1K_V1", _V3_RECIPE),
    ("v3_large", "torchvision_v2", "mobilenet_v3_large-5c1a4163.pth", 75.274, 92.566, 232,
     "MobileNet_V3_Large_Weights.IMAGENET1K_V2", _NEW_RECIPE),
    ("v3_small", "torchvision_v1", "mobilenet_v3_small-047dcff4.pth", 67.668, 87.402, 256,
     "MobileNet_V3_Small_Weights.IMAGENET1K_V1", _V3_RECIPE),
):  # fmt: skip
    _torchvision_classifier(
        _name, _tag, _file, _top1, _top5, _resize,
        aliases=(DEFAULT_TAG,) if (_name, _tag) == ("v3_small", "torchvision_v1") else (),
        metrics_source=f"{TORCHVISION_META.format(_weights)}; recipe {_recipe}",
    )  # fmt: skip
_timm_classifier(
    "v2", "timm_ra_in1k", _TIMM_RELEASE + "mobilenetv2_100_ra-b33bc2c4.pth", "b33bc2c4", 72.910, 91.000, 0.875,
    mean=IMAGENET_MEAN, std=IMAGENET_STD, aliases=(DEFAULT_TAG,), note=_ALSO_HF.format("mobilenetv2_100.ra_in1k"),
)  # fmt: skip
_timm_classifier(
    "v3_large", "timm_ra_in1k", _TIMM_RELEASE + "mobilenetv3_large_100_ra-f55367f5.pth", "f55367f5", 75.784, 92.528,
    0.875, mean=IMAGENET_MEAN, std=IMAGENET_STD, aliases=(DEFAULT_TAG,),
    note=_ALSO_HF.format("mobilenetv3_large_100.ra_in1k"),
)  # fmt: skip
_timm_classifier(
    "v3_large", "timm_ra4_in1k", _hf_bin("mobilenetv3_large_100.ra4_e3600_r224_in1k"), None, 76.310, 92.842, 0.95,
    mean=HALF, std=HALF, file_name="mobilenetv3_large_100.ra4_e3600_r224_in1k.bin", note=_NO_HF_HASH,
)  # fmt: skip
_timm_classifier(
    "v3_small", "timm_lamb_in1k", _TIMM_RELEASE + "mobilenetv3_small_100_lamb-266a294c.pth", "266a294c", 67.636,
    87.638, 0.875, mean=IMAGENET_MEAN, std=IMAGENET_STD, note=_ALSO_HF.format("mobilenetv3_small_100.lamb_in1k"),
)  # fmt: skip

# MobileNetV4: timm's ImageNet-1k classifiers (the in12k_ft ones pre-trained on ImageNet-12k), each at the input size
# and crop it was trained and published with; all on the HF hub only, so none is hash-checked (`_NO_HF_HASH`)
_IMAGENET_NORM, _INCEPTION_NORM = (IMAGENET_MEAN, IMAGENET_STD), (HALF, HALF)
for _name, _tag, _size, _crop, _top1, _top5, (_mean, _std), _default in (
    ("v4_conv_small", "e2400_r224_in1k", 224, 0.875, 73.756, 91.430, _IMAGENET_NORM, False),
    ("v4_conv_small", "e1200_r224_in1k", 224, 0.875, 73.450, 91.340, _IMAGENET_NORM, False),
    ("v4_conv_small", "e3600_r256_in1k", 256, 0.95, 74.534, 91.940, _INCEPTION_NORM, True),
    ("v4_conv_medium", "e500_r224_in1k", 224, 0.95, 79.092, 94.788, _IMAGENET_NORM, False),
    ("v4_conv_medium", "e500_r256_in1k", 256, 0.95, 79.916, 95.188, _IMAGENET_NORM, False),
    ("v4_conv_medium", "e250_r384_in12k_ft_in1k", 384, 0.95, 82.776, 96.448, _IMAGENET_NORM, True),
    ("v4_conv_large", "e500_r256_in1k", 256, 0.95, 81.864, 95.696, _IMAGENET_NORM, False),
    ("v4_conv_large", "e600_r384_in1k", 384, 0.95, 82.974, 96.244, _IMAGENET_NORM, True),
    ("v4_hybrid_medium", "e500_r224_in1k", 224, 0.95, 80.432, 95.378, _IMAGENET_NORM, False),
    ("v4_hybrid_medium", "ix_e550_r256_in1k", 256, 0.95, 81.478, 95.692, _IMAGENET_NORM, False),
    ("v4_hybrid_medium", "e200_r256_in12k_ft_in1k", 256, 0.95, 82.360, 96.256, _IMAGENET_NORM, False),
    ("v4_hybrid_medium", "ix_e550_r384_in1k", 384, 0.95, 82.952, 96.470, _IMAGENET_NORM, True),
    ("v4_hybrid_large", "e600_r384_in1k", 384, 0.95, 83.826, 96.748, _IMAGENET_NORM, False),
    ("v4_hybrid_large", "ix_e600_r384_in1k", 384, 0.95, 83.996, 96.714, _IMAGENET_NORM, True),
):  # fmt: skip
    _timm_name = f"mobilenet{_name}.{_tag}"  # e.g. mobilenetv4_conv_small.e2400_r224_in1k
    _timm_classifier(
        _name, f"timm_{_tag}", _hf_bin(_timm_name), None, _top1, _top5, _crop, image_size=_size, mean=_mean, std=_std,
        file_name=f"{_timm_name}.bin", aliases=(DEFAULT_TAG,) if _default else (), note=_NO_HF_HASH,
    )  # fmt: skip
