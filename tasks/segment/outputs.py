"""`predict` outputs for segmentation: the predicted mask as a palette PNG and a colour overlay beside each image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
from PIL import Image
from pytorch_lightning.callbacks import BasePredictionWriter


def voc_palette(size: int = 256) -> list[int]:
    """The Pascal VOC colour map (bit-interleaved label colours), as a flat RGB list for PIL palettes."""
    palette = []
    for label in range(size):
        r = g = b = 0
        value = label
        for shift in range(7, -1, -1):
            r |= ((value >> 0) & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        palette += [r, g, b]
    return palette


class SegmentationPredictionWriter(BasePredictionWriter):
    """Writes `<dir>/<stem>_mask.png` (VOC palette) and `<dir>/<stem>_overlay.jpg` (image blended with the mask)."""

    def __init__(self, output_dir: str, class_names: list[str], alpha: float = 0.5) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.class_names = class_names
        self.alpha = alpha
        self.palette = voc_palette()

    def write_on_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, prediction: Any, *args) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        for item in prediction:
            path = Path(item["path"])
            mask = Image.fromarray(item["mask"].numpy().astype(np.uint8), mode="P")
            mask.putpalette(self.palette)
            mask.save(self.output_dir / f"{path.stem}_mask.png")
            with Image.open(path) as image:
                rgb = image.convert("RGB")
            colours = mask.convert("RGB")
            overlay = Image.blend(rgb, colours, self.alpha)
            overlay.paste(rgb, mask=Image.fromarray((item["mask"].numpy() == 0).astype(np.uint8) * 255))
            overlay.save(self.output_dir / f"{path.stem}_overlay.jpg", quality=90)
