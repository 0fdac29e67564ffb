"""`predict` outputs for segmentation: the predicted mask as a palette PNG and a colour overlay beside each image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from PIL import Image
from pytorch_lightning.callbacks import BasePredictionWriter

from deploy.run.drawing import OVERLAY_ALPHA, overlay_mask, palette_mask
from deploy.run.writers import JPEG_QUALITY
from tasks.common.images import load_rgb


class SegmentationPredictionWriter(BasePredictionWriter):
    """Writes `<dir>/<stem>_mask.png` (VOC palette) and `<dir>/<stem>_overlay.jpg` (image blended with the mask)."""

    def __init__(self, output_dir: str, class_names: list[str], alpha: float = OVERLAY_ALPHA) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.class_names = class_names
        self.alpha = alpha

    def write_on_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, prediction: Any, *args) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        for item in prediction:
            path = Path(item["path"])
            mask = item["mask"].numpy()
            palette_mask(mask).save(self.output_dir / f"{path.stem}_mask.png")
            overlay = overlay_mask(load_rgb(path), mask, self.alpha)  # decoded as the data module: the mask's frame
            Image.fromarray(overlay).save(self.output_dir / f"{path.stem}_overlay.jpg", quality=JPEG_QUALITY)
