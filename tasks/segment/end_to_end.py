"""The end-to-end segmenter file: uint8 RGB [N, 3, H, W] of any height and width in (where the runtime allows; else
S x S), the class-index `mask` [N, H, W] out (the argmax inside), and with `--logits` the `logits` [N, C, H, W] too.
The images are not resized, as `Segmenter.predict` does not resize them: each runs at its own size."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from backbones.fuse import fuse
from tasks.common.end_to_end import EndToEnd, Normalize, base_metadata, recorded_datamodule
from tasks.common.export import TOLERANCE
from tasks.common.task_checkpoint import TaskCheckpoint

OPTIONS: dict[str, dict[str, Any]] = {
    "logits": {"action": "store_true", "help": "also output the logits [N, C, H, W] beside the mask"},
}
# the fraction of pixels whose class may differ between the file and PyTorch: near-equal top logits may swap
MASK_TOLERANCE = 1e-3


class EndToEndSegmenter(nn.Module):
    """Normalise, the fused network (logits at the input size), argmax; `logits`: return them too."""

    def __init__(self, network: nn.Module, normalize: Normalize, logits: bool) -> None:
        super().__init__()
        self.normalize, self.network, self.logits = normalize, network, logits

    def forward(self, images: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        logits = self.network(self.normalize(images))
        mask = logits.argmax(1)
        return (mask, logits) if self.logits else mask


def end_to_end(checkpoint: TaskCheckpoint, size: int, nms: bool, logits: bool = False) -> EndToEnd:
    """The end-to-end segmenter of `checkpoint` (`size` is the traced example's side)."""
    datamodule = recorded_datamodule(checkpoint)
    mean, std = tuple(datamodule.mean), tuple(datamodule.std)
    module = EndToEndSegmenter(fuse(checkpoint.module.model), Normalize(mean, std), logits).eval()
    outputs = ("mask", "logits") if logits else ("mask",)
    spec = {"size": None, "resize": "none", "mean": list(mean), "std": list(std)}
    metadata = base_metadata(checkpoint, checkpoint.module.class_names, spec, outputs)
    return EndToEnd(module, outputs, metadata, compare_masks, any_size=True)


def compare_masks(
    got: Sequence[Tensor], want: Sequence[Tensor], size: int
) -> tuple[dict[str, float], dict[str, float]]:
    """`mask`: the fraction of pixels whose class differs; `logits`: the largest absolute difference."""
    diffs = {"mask": float((got[0] != want[0]).double().mean())}
    tolerances = {"mask": MASK_TOLERANCE}
    if len(want) > 1:
        diffs["logits"] = float((got[1].double() - want[1].double()).abs().max())
        tolerances["logits"] = TOLERANCE
    return diffs, tolerances
