"""What a segmenter exports, and how exported segmenters are scored: `logits` [N, C, S, S], already upsampled to
the input size, at a fixed side of `EXPORT_SIZE` unless `export --image_size` says otherwise."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassConfusionMatrix

from deploy.runtimes import Loaded
from tasks.common.export import resize_images
from tasks.segment.metrics import segmentation_scores

EXPORT_SIZE = 520  # torchvision's segmentation evaluation size


def exportable(network: nn.Module, image_size: int) -> nn.Module:
    """The segmentation network itself: its output is the upsampled logits."""
    return network


def evaluate_segmentation(
    models: Mapping[str, Loaded],
    loader: Iterable,
    size: int | None,
    num_classes: int,
    ignore_index: int,
    outputs: Sequence[str] = ("logits",),
) -> dict[str, float]:
    """mIoU of each model (`<name>/mIoU`) over the whole loader, as the segmentation task scores it (one confusion
    matrix over the set, `segmentation_scores`), and their pixel agreement.

    Images whose size differs from the exported one are resized to it (not with `size` None: a file that takes any
    size), and the logits back to the mask's size (bilinear), the same for every model; end-to-end files' `mask`
    (`outputs`) is their argmax already, brought back by nearest neighbour.
    """
    confusion = {name: MulticlassConfusionMatrix(num_classes, ignore_index=ignore_index) for name in models}
    agree, pixels = 0, 0
    for images, masks in loader:
        inputs = images if size is None else resize_images(images, size)
        predictions = {}
        for name, model in models.items():
            predictions[name] = predicted_mask(model.run(inputs)[0], outputs[0], tuple(masks.shape[-2:]))
            confusion[name].update(predictions[name], masks)
        if len(predictions) == 2:
            first, second = predictions.values()
            valid = masks != ignore_index
            agree += int((first == second)[valid].sum())
            pixels += int(valid.sum())
    figures = {f"{name}/mIoU": segmentation_scores(metric.compute())["mIoU"] for name, metric in confusion.items()}
    if pixels:
        figures["pixel_agreement"] = agree / pixels
    return figures


def predicted_mask(output: Tensor, name: str, size: tuple[int, int]) -> Tensor:
    """The class mask [N, H, W] at `size` from a file's first output: `logits` (bilinear, then argmax) or an
    end-to-end file's `mask` (nearest)."""
    if name == "mask":
        if tuple(output.shape[-2:]) == size:
            return output
        return F.interpolate(output[:, None].float(), size=size, mode="nearest")[:, 0].long()
    if tuple(output.shape[-2:]) != size:
        output = F.interpolate(output, size=size, mode="bilinear", align_corners=False)
    return output.argmax(1)


def evaluate_exported(
    models: Mapping[str, Loaded], datamodule: Any, checkpoint: Any, size: int | None, outputs: Sequence[str]
) -> dict[str, float]:
    """`evaluate_segmentation` on the data module's val split, with the checkpoint's class count."""
    return evaluate_segmentation(
        models, datamodule.val_dataloader(), size, checkpoint.hparams["num_classes"], datamodule.ignore_index, outputs
    )
