"""The end-to-end classifier file: uint8 RGB [N, 3, R, R] in (the image's shorter side resized to
int(R / crop_pct), then the centre R x R crop, as `ClassificationEvalTransform`), `probabilities` [N, K] out (the
softmax inside)."""

from __future__ import annotations

from torch import Tensor, nn

from backbones.fuse import fuse
from tasks.classify.data.transforms import eval_resize_side
from tasks.common.end_to_end import EndToEnd, Normalize, base_metadata, max_abs_diff, recorded_datamodule
from tasks.common.export import TOLERANCE
from tasks.common.task_checkpoint import TaskCheckpoint


class EndToEndClassifier(nn.Module):
    """Normalise, the fused classifier, softmax."""

    def __init__(self, network: nn.Module, normalize: Normalize) -> None:
        super().__init__()
        self.normalize, self.network = normalize, network

    def forward(self, images: Tensor) -> Tensor:
        return self.network(self.normalize(images)).softmax(1)


def end_to_end(checkpoint: TaskCheckpoint, size: int, nms: bool) -> EndToEnd:
    """The end-to-end classifier of `checkpoint` at `size` x `size`."""
    datamodule = recorded_datamodule(checkpoint)
    mean, std = tuple(datamodule.mean), tuple(datamodule.std)
    module = EndToEndClassifier(fuse(checkpoint.module.model), Normalize(mean, std)).eval()
    spec = {
        "size": [size, size],
        "resize": "shorter_side_crop",
        "resize_side": eval_resize_side(size, datamodule.crop_pct),
        "interpolation": datamodule.interpolation,
        "mean": list(mean),
        "std": list(std),
    }
    outputs = ("probabilities",)
    metadata = base_metadata(checkpoint, checkpoint.module.class_names, spec, outputs)
    return EndToEnd(module, outputs, metadata, max_abs_diff(outputs, (TOLERANCE,)))
