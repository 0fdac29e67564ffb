"""The files a CLI run writes, per task, as `python -m tasks.<task> predict` writes them (`tasks/*/outputs.py`),
and for videos their per-frame results.

- detect: `<stem>.jpg` (detections scoring >= the draw threshold drawn, JPEG quality 90) and `detections.json`, a COCO
  results list (`bbox` x, y, w, h in the image's pixels, `category_id` from the metadata's `category_ids`, else the
  label, `category_name`, `image_id` in prediction order, `file_name`); a video's frames go to
  `<video stem>_detections.json`, the same records with `image_id` the frame index, and `frame` and `time`;
- segment: `<stem>_mask.png` (VOC palette) and `<stem>_overlay.jpg`; a video's masks go to
  `<video stem>_masks/<frame>.png`;
- classify: `predictions.csv` (path, then class_k, score_k for the top 5); a video's to `<video stem>_predictions.csv`
  (frame, time, then the same).

Each writer also draws a result on its image (`annotate`), for the annotated copy of a video. The file names, the
JPEG quality, the COCO record and the CSV columns live here, torch-free, and `tasks/*/outputs.py` use them.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from deploy.run.contract import Contract
from deploy.run.drawing import caption, draw_caption, draw_detections, overlay_mask, palette_mask
from deploy.run.results import TOP_K

JPEG_QUALITY = 90  # of the drawn images
DETECTIONS_JSON = "detections.json"
PREDICTIONS_CSV = "predictions.csv"


def coco_record(
    image_id: int, file_name: str, category_id: int, category_name: str, box: list[float], score: float
) -> dict[str, Any]:
    """One detection as a COCO results record: `bbox` x, y, w, h from the box's x1, y1, x2, y2."""
    x1, y1, x2, y2 = box
    return {
        "image_id": image_id,
        "file_name": file_name,
        "category_id": category_id,
        "category_name": category_name,
        "bbox": [x1, y1, x2 - x1, y2 - y1],
        "score": score,
    }


def rank_columns(classes: int) -> list[str]:
    """The ranked columns of a classification CSV: class_1, score_1 ... class_k, score_k, k = min(TOP_K, classes)."""
    return [f"{field}_{i}" for i in range(1, min(TOP_K, classes) + 1) for field in ("class", "score")]


def ranked_values(labels: Sequence[int], scores: Sequence[float], class_names: Sequence[str]) -> list[str]:
    """An image's ranked classes as the values of those columns: each class name, then its score."""
    ranked = zip(labels, scores, strict=True)
    return [value for label, score in ranked for value in (class_names[label], f"{score:.6f}")]


class Writer:
    """Writes one task's files into `folder`: `image` per image, `frame` per video frame, `end_video` after a video's
    frames, `finish` after everything (returns the names of the files that gather all images)."""

    def __init__(self, folder: Path, contract: Contract, score_threshold: float) -> None:
        self.folder, self.contract, self.score_threshold = folder, contract, score_threshold
        self.images = 0

    def image_files(self, source: Path) -> list[str]:
        """The files `image` writes for `source`."""
        raise NotImplementedError

    def video_files(self, source: Path) -> list[str]:
        """The per-frame result files of the video `source`."""
        raise NotImplementedError

    def image(self, source: Path, image: np.ndarray, result: dict[str, Any]) -> str:
        """Write the image's files; return a one-line summary of its result."""
        raise NotImplementedError

    def annotate(self, image: np.ndarray, result: dict[str, Any]) -> np.ndarray:
        raise NotImplementedError

    def frame(self, source: Path, index: int, time: float, result: dict[str, Any]) -> None:
        raise NotImplementedError

    def end_video(self, source: Path) -> None:
        """Write what the video's frames gathered."""

    def finish(self) -> list[str]:
        return []

    def totals(self) -> str:
        """What the images' results add up to, for the summary ("" where nothing)."""
        return ""


class DetectionWriter(Writer):
    def __init__(self, folder: Path, contract: Contract, score_threshold: float) -> None:
        super().__init__(folder, contract, score_threshold)
        self.records: list[dict[str, Any]] = []
        self.frames: list[dict[str, Any]] = []
        self.drawn = 0  # on the images

    def coco_records(self, result: dict[str, Any], image_id: int, file_name: str) -> list[dict[str, Any]]:
        ids, names = self.contract.category_ids, self.contract.class_names
        found = zip(result["boxes"].tolist(), result["scores"].tolist(), result["labels"].tolist(), strict=True)
        return [
            coco_record(
                image_id,
                file_name,
                int(ids[label]) if ids is not None and label < len(ids) else int(label),
                names[label],
                box,
                score,
            )
            for box, score, label in found
        ]

    def image_files(self, source: Path) -> list[str]:
        return [f"{source.stem}.jpg"]

    def video_files(self, source: Path) -> list[str]:
        return [f"{source.stem}_detections.json"]

    def annotate(self, image: np.ndarray, result: dict[str, Any]) -> np.ndarray:
        return draw_detections(image, result, self.contract.class_names, self.score_threshold)[0]

    def image(self, source: Path, image: np.ndarray, result: dict[str, Any]) -> str:
        self.records += self.coco_records(result, self.images, source.name)
        self.images += 1
        drawn, shown = draw_detections(image, result, self.contract.class_names, self.score_threshold)
        self.drawn += shown
        Image.fromarray(drawn).save(self.folder / f"{source.stem}.jpg", quality=JPEG_QUALITY)
        return f"{len(result['scores'])} detections, {shown} drawn"

    def frame(self, source: Path, index: int, time: float, result: dict[str, Any]) -> None:
        records = self.coco_records(result, index, source.name)
        self.frames += [{**record, "frame": index, "time": time} for record in records]

    def end_video(self, source: Path) -> None:
        (self.folder / f"{source.stem}_detections.json").write_text(json.dumps(self.frames))
        self.frames = []

    def finish(self) -> list[str]:
        if not self.images:
            return []
        (self.folder / DETECTIONS_JSON).write_text(json.dumps(self.records))
        return [DETECTIONS_JSON]

    def totals(self) -> str:
        return f"{len(self.records)} detections, {self.drawn} drawn (score >= {self.score_threshold:g})"


class SegmentationWriter(Writer):
    def image_files(self, source: Path) -> list[str]:
        return [f"{source.stem}_mask.png", f"{source.stem}_overlay.jpg"]

    def video_files(self, source: Path) -> list[str]:
        return [f"{source.stem}_masks"]

    def annotate(self, image: np.ndarray, result: dict[str, Any]) -> np.ndarray:
        return overlay_mask(image, result["mask"])

    def image(self, source: Path, image: np.ndarray, result: dict[str, Any]) -> str:
        self.images += 1
        palette_mask(result["mask"]).save(self.folder / f"{source.stem}_mask.png")
        overlay = Image.fromarray(overlay_mask(image, result["mask"]))
        overlay.save(self.folder / f"{source.stem}_overlay.jpg", quality=JPEG_QUALITY)
        return ", ".join(result["names"])

    def frame(self, source: Path, index: int, time: float, result: dict[str, Any]) -> None:
        folder = self.folder / f"{source.stem}_masks"
        folder.mkdir(exist_ok=True)
        palette_mask(result["mask"]).save(folder / f"{index:06d}.png")


class ClassificationWriter(Writer):
    def __init__(self, folder: Path, contract: Contract, score_threshold: float) -> None:
        super().__init__(folder, contract, score_threshold)
        self.ranks = rank_columns(len(contract.class_names))
        self.rows: list[list[Any]] = []
        self.frames: list[list[Any]] = []

    def ranked(self, result: dict[str, Any]) -> list[str]:
        return ranked_values(result["labels"], result["scores"], self.contract.class_names)

    def image_files(self, source: Path) -> list[str]:
        return []

    def video_files(self, source: Path) -> list[str]:
        return [f"{source.stem}_predictions.csv"]

    def annotate(self, image: np.ndarray, result: dict[str, Any]) -> np.ndarray:
        return draw_caption(image, caption(result["names"][0], result["scores"][0]))

    def image(self, source: Path, image: np.ndarray, result: dict[str, Any]) -> str:
        self.images += 1
        self.rows.append([str(source), *self.ranked(result)])
        return caption(result["names"][0], result["scores"][0])

    def frame(self, source: Path, index: int, time: float, result: dict[str, Any]) -> None:
        self.frames.append([index, f"{time:.6f}", *self.ranked(result)])

    def end_video(self, source: Path) -> None:
        write_csv(self.folder / f"{source.stem}_predictions.csv", ["frame", "time", *self.ranks], self.frames)
        self.frames = []

    def finish(self) -> list[str]:
        if not self.images:
            return []
        write_csv(self.folder / PREDICTIONS_CSV, ["path", *self.ranks], self.rows)
        return [PREDICTIONS_CSV]


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)


WRITERS: dict[str, type[Writer]] = {
    "detect": DetectionWriter,
    "segment": SegmentationWriter,
    "classify": ClassificationWriter,
}
