"""`predict` outputs for detection: each image with its boxes drawn, and one COCO results JSON."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from PIL import Image
from pytorch_lightning.callbacks import BasePredictionWriter
from torchvision.transforms.functional import pil_to_tensor, to_pil_image

from tasks.common.drawing import draw_boxes

log = logging.getLogger(__name__)


class DetectionPredictionWriter(BasePredictionWriter):
    """Writes `<dir>/<image stem>.jpg` with boxes, class names and scores drawn, and `<dir>/detections.json`.

    The JSON is a COCO results list (`bbox` as x, y, w, h in original pixels) with `category_id` the dataset's
    own category id (the data module's `label_to_category_id`: COCO's ids, the label itself for VOC) and
    `category_name` its class name; `image_id` indexes the images in prediction order.
    """

    def __init__(self, output_dir: str, class_names: list[str], score_threshold: float = 0.3) -> None:
        super().__init__(write_interval="epoch")
        self.output_dir = Path(output_dir)
        self.class_names = class_names
        self.score_threshold = score_threshold

    def write_on_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, predictions: Any, batch_indices):
        self.output_dir.mkdir(parents=True, exist_ok=True)
        to_category = dict(getattr(trainer.datamodule, "label_to_category_id", None) or {})
        results = []
        for image_id, detection in enumerate(d for batch in predictions for d in batch):
            path = Path(detection["path"])
            boxes, scores, labels = detection["boxes"], detection["scores"], detection["labels"]
            for box, score, label in zip(boxes.tolist(), scores.tolist(), labels.tolist(), strict=True):
                x1, y1, x2, y2 = box
                results.append(
                    {
                        "image_id": image_id,
                        "file_name": path.name,
                        "category_id": to_category.get(int(label), int(label)),
                        "category_name": self.class_names[int(label)],
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "score": score,
                    }
                )
            shown = scores >= self.score_threshold
            with Image.open(path) as image:
                pixels = pil_to_tensor(image.convert("RGB"))
            captions = [
                f"{self.class_names[int(label)]} {score:.2f}"
                for label, score in zip(labels[shown], scores[shown], strict=True)
            ]
            drawn = draw_boxes(pixels, boxes[shown], labels[shown].tolist(), captions)
            to_pil_image(drawn).save(self.output_dir / f"{path.stem}.jpg", quality=90)
        (self.output_dir / "detections.json").write_text(json.dumps(results))
        count = sum(len(batch) for batch in predictions)
        log.info("wrote %d drawn images and %d detections to %s", count, len(results), self.output_dir)
