"""`predict` outputs for detection: each image with its boxes drawn, and one COCO results JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter
from pytorch_lightning.utilities import rank_zero_info
from torchvision.transforms.functional import to_pil_image

from deploy.run.drawing import DRAW_SCORE_THRESHOLD
from deploy.run.writers import DETECTIONS_JSON, JPEG_QUALITY, coco_record
from tasks.common.images import load_rgb
from tasks.detect.predictor import draw_detections


class DetectionPredictionWriter(BasePredictionWriter):
    """Writes `<dir>/<image stem>.jpg` with boxes, class names and scores drawn, and `<dir>/detections.json`.

    The JSON is a COCO results list (`bbox` as x, y, w, h in original pixels) with `category_id` the dataset's
    own category id (the data module's `label_to_category_id`: COCO's ids, the label itself for VOC) and
    `category_name` its class name; `image_id` indexes the images in prediction order.
    """

    def __init__(self, output_dir: str, class_names: list[str], score_threshold: float = DRAW_SCORE_THRESHOLD) -> None:
        super().__init__(write_interval="epoch")
        self.output_dir = Path(output_dir)
        self.class_names = class_names
        self.score_threshold = score_threshold
        self.drawn_boxes = 0

    def write_on_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, predictions: Any, batch_indices):
        self.output_dir.mkdir(parents=True, exist_ok=True)
        to_category = dict(getattr(trainer.datamodule, "label_to_category_id", None) or {})
        results = []
        self.drawn_boxes = 0  # detections scoring >= score_threshold, drawn on the images
        for image_id, detection in enumerate(d for batch in predictions for d in batch):
            path = Path(detection["path"])
            boxes, scores, labels = detection["boxes"], detection["scores"], detection["labels"]
            for box, score, label in zip(boxes.tolist(), scores.tolist(), labels.tolist(), strict=True):
                category = to_category.get(int(label), int(label))
                results.append(coco_record(image_id, path.name, category, self.class_names[int(label)], box, score))
            # the frame the boxes are in: decoded as the data module decodes it (EXIF orientation applied)
            pixels = torch.from_numpy(load_rgb(path)).permute(2, 0, 1)
            drawn, shown = draw_detections(pixels, detection, self.class_names, self.score_threshold)
            self.drawn_boxes += shown
            to_pil_image(drawn).save(self.output_dir / f"{path.stem}.jpg", quality=JPEG_QUALITY)
        (self.output_dir / DETECTIONS_JSON).write_text(json.dumps(results))
        count = sum(len(batch) for batch in predictions)
        threshold = f"score >= {self.score_threshold:g}"
        rank_zero_info(
            f"predict: {count} images with {self.drawn_boxes} detections drawn ({threshold}) in {self.output_dir}, "
            f"all {len(results)} detections in {DETECTIONS_JSON}"
            + ("" if self.drawn_boxes else f"; none scored {threshold}: lower --model.draw_score_threshold")
        )
