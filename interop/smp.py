"""Every registered backbone as a segmentation_models_pytorch encoder.

Importing this module adds entries to smp's encoder table, so that any smp model takes them by name::

    import segmentation_models_pytorch as smp
    import interop.smp  # noqa: F401  (registers the encoders)

    model = smp.DeepLabV3Plus("mobilenet_suite_v3_large", encoder_weights=None, encoder_output_stride=16)

Names (`encoder_name`): ``mobilenet_suite_<backbone>`` at width 1.0 and ``mobilenet_suite_<backbone>_<width x 100,
three digits>`` otherwise, e.g. ``mobilenet_suite_v3_large_075``, ``mobilenet_suite_v1_025``,
``mobilenet_suite_v2_140``. `ENCODER_WIDTHS` lists the widths registered at import; `register_encoder` adds any
other width under a name of the caller's choice. Existing smp keys are never overwritten.

Weights: smp's `encoder_weights` only accepts names of its own hub downloads, and it rejects any other value
before our encoder could see it, so these encoders take ``encoder_weights=None`` (smp's default "imagenet" raises
smp's KeyError). Weights (anything `backbones.create_backbone(weights=...)` takes: a tag of
`backbones.weights.list_weights(backbone)` such as "imagenet", a URL, or a torchvision, timm or our own file) come
in one of two ways:

- ``register_encoder("my_encoder", "v3_large", 1.0, weights="imagenet")``, then
  ``smp.Unet("my_encoder", encoder_weights=None)``: the file is loaded while smp builds the encoder, so
  ``in_channels != 3`` adapts the loaded RGB stem as smp does for its pretrained encoders;
- ``load_encoder_weights(model, path)`` on a built model (or encoder).

Output stride: smp passes ``output_stride`` to the encoder's constructor and then calls ``make_dilated``; the
encoder builds our backbone at that stride (the builder's stride-to-dilation), and ``make_dilated`` only rebuilds
when asked for a different stride, keeping the weights.

Models saved with smp's hub mixin name their encoder; import this module before loading them.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from segmentation_models_pytorch.encoders import encoders as smp_encoders
from segmentation_models_pytorch.encoders._base import EncoderMixin
from torch import Tensor, nn

from backbones import create_backbone, get_spec, list_backbones
from backbones.builder import MobileNetBackbone, build_backbone
from backbones.weights import adapt_input_channels, resolve_weights

PREFIX = "mobilenet_suite_"
SMP_OUTPUT_STRIDES = (8, 16)  # what smp's make_dilated accepts
MAX_DEPTH = 5  # stage ends at strides 2, 4, 8, 16, 32
STANDARD_WIDTHS = (0.5, 0.75, 1.0)
# the papers' further widths that torchvision/timm also publish
EXTRA_WIDTHS: dict[str, tuple[float, ...]] = {"v1": (0.25,), "v2": (1.4,)}
ENCODER_WIDTHS: dict[str, tuple[float, ...]] = {
    name: tuple(sorted(STANDARD_WIDTHS + EXTRA_WIDTHS.get(name, ()))) for name in list_backbones()
}
_STEM_WEIGHT = "stem.conv.weight"
_SOURCE = "mobilenet_suite"  # marks our entries in smp's table


class MobileNetSuiteEncoder(nn.Module, EncoderMixin):
    """smp's encoder contract over a `MobileNetBackbone`: forward returns the input, then stages at strides 2..32.

    smp constructs it from the registered params plus `depth` and `output_stride`, then calls `set_in_channels`
    and `make_dilated`; both rebuild the backbone only when they change something.
    """

    _is_torch_scriptable = False  # the backbone's forward picks taps with Python sets and breaks early

    def __init__(
        self,
        backbone: str,
        width: float = 1.0,
        weights: str | Path | None = None,
        depth: int = MAX_DEPTH,
        output_stride: int = 32,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if not 1 <= depth <= MAX_DEPTH:
            raise ValueError(f"depth must be in [1, {MAX_DEPTH}], got {depth}")
        self.backbone: MobileNetBackbone = create_backbone(
            backbone,
            width=width,
            out_indices=tuple(range(depth)),
            output_stride=output_stride,
            in_chans=in_channels,
            weights=weights,
        )
        self._depth = depth
        self._output_stride = output_stride
        self._in_channels = in_channels
        self._pretrained = weights is not None

    @property
    def _out_channels(self) -> list[int]:  # read by EncoderMixin.out_channels
        return [self._in_channels, *self.backbone.feature_info.channels()]

    @property
    def reductions(self) -> list[int]:
        """Input size / feature size of each returned map (1 for the input itself); dilation caps them."""
        return [1, *self.backbone.feature_info.reduction()]

    def forward(self, x: Tensor) -> list[Tensor]:
        return [x, *self.backbone(x)]

    def set_in_channels(self, in_channels: int, pretrained: bool = True) -> None:
        """Rebuild the stem for `in_channels`: loaded RGB weights adapted as smp and timm do, else re-initialised."""
        if in_channels == self._in_channels:
            return
        adapt = (pretrained or self._pretrained) and self._in_channels == 3
        self._rebuild(in_channels=in_channels, output_stride=self._output_stride, adapt_stem=adapt)

    def make_dilated(self, output_stride: int) -> None:
        """Use our builder's stride-to-dilation rather than smp's conv patching: same weights, dilated stages."""
        if output_stride not in SMP_OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be one of {SMP_OUTPUT_STRIDES}, got {output_stride}")
        if output_stride != self._output_stride:
            self._rebuild(in_channels=self._in_channels, output_stride=output_stride, adapt_stem=False)

    def load_weights(self, path: str | Path) -> None:
        """Load weights (a tag, a URL, or a torchvision, timm or mobilenet-suite file) into the backbone.

        Copied in place (parameters keep their identity, device and memory format) unless the checkpoint's source
        needs other spec settings for parity (timm's norm eps), in which case the backbone module is replaced.
        """
        old = self.backbone
        new = create_backbone(
            old.spec.name,
            width=old.width,
            out_indices=tuple(range(self._depth)),
            output_stride=self._output_stride,
            in_chans=self._in_channels,
            weights=path,
        )
        if new.spec == old.spec:
            old.load_state_dict(new.state_dict())
        else:
            self._replace_backbone(new)
        self._pretrained = True

    def _rebuild(self, *, in_channels: int, output_stride: int, adapt_stem: bool) -> None:
        old = self.backbone
        new = build_backbone(
            old.spec,
            width=old.width,
            out_indices=tuple(range(self._depth)),
            output_stride=output_stride,
            in_chans=in_channels,
        )
        state = old.state_dict()
        if in_channels != old.in_chans:
            fresh = new.state_dict()[_STEM_WEIGHT]
            state[_STEM_WEIGHT] = adapt_input_channels(state[_STEM_WEIGHT], in_channels) if adapt_stem else fresh
        new.load_state_dict(state)
        self._replace_backbone(new)
        self._in_channels, self._output_stride = in_channels, output_stride

    def _replace_backbone(self, new: MobileNetBackbone) -> None:
        """Swap in `new` on the old backbone's device and dtype, in its train/eval mode and with its frozen parameters
        (e.g. smp's `freeze_encoder`) still frozen."""
        old = self.backbone
        reference = next(old.parameters())
        new = new.to(device=reference.device, dtype=reference.dtype).train(old.training)
        frozen = {name for name, parameter in old.named_parameters() if not parameter.requires_grad}
        for name, parameter in new.named_parameters():
            parameter.requires_grad_(name not in frozen)
        self.backbone = new


def encoder_name(backbone: str, width: float = 1.0) -> str:
    """The registered name of `backbone` at `width`: no suffix at 1.0, else width x 100 in three digits."""
    if width == 1.0:
        return f"{PREFIX}{backbone}"
    return f"{PREFIX}{backbone}_{round(width * 100):03d}"


def register_encoder(name: str, backbone: str, width: float = 1.0, *, weights: str | Path | None = None) -> str:
    """Register `backbone` at `width` as smp encoder `name`; `weights` (a tag, a URL or a local file, resolved to a
    local file, downloaded if need be, here) is loaded at each build.

    Returns `name`. Raises if smp already has an encoder of that name, so smp's own encoders stay intact.
    """
    get_spec(backbone)  # unknown backbones raise here, listing the valid names
    if not width > 0:
        raise ValueError(f"width must be positive, got {width}")
    if name in smp_encoders:
        raise ValueError(f"smp already has an encoder named {name!r}; choose another name")
    weights, _ = resolve_weights(backbone, weights)
    smp_encoders[name] = {
        "encoder": MobileNetSuiteEncoder,
        "pretrained_settings": {},
        "params": {"backbone": backbone, "width": width, "weights": None if weights is None else str(weights)},
        "source": _SOURCE,
    }
    return name


def list_encoders() -> list[str]:
    """Names of the smp encoders this module registered (at import or through `register_encoder`)."""
    return [name for name, entry in smp_encoders.items() if _is_ours(entry)]


def load_encoder_weights(model: nn.Module, path: str | Path) -> None:
    """Load a local checkpoint into an smp model's encoder (or into a `MobileNetSuiteEncoder` itself)."""
    encoder = getattr(model, "encoder", model)
    if not isinstance(encoder, MobileNetSuiteEncoder):
        raise TypeError(
            f"load_encoder_weights needs an smp model built with a {PREFIX}* encoder or a MobileNetSuiteEncoder, "
            f"got {type(encoder).__name__}"
        )
    encoder.load_weights(path)


def _is_ours(entry: Mapping[str, Any]) -> bool:
    return isinstance(entry, Mapping) and entry.get("source") == _SOURCE


def _register_defaults() -> None:
    for backbone, widths in ENCODER_WIDTHS.items():
        for width in widths:
            name = encoder_name(backbone, width)
            existing = smp_encoders.get(name)
            if existing is None:
                register_encoder(name, backbone, width)
            elif not _is_ours(existing):  # a future smp key: theirs wins
                warnings.warn(
                    f"smp already has an encoder named {name!r}; not registering {backbone} under it", stacklevel=3
                )


_register_defaults()
