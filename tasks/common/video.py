"""Video in and out for the predictors: opening videos and annotated copies with OpenCV, and the record
`predict_video` returns. The suffixes, codecs and frame reading are `deploy.run.video`'s (torch-free, shared with
the runner of exported models)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2

from deploy.run.video import VIDEO_CODECS, VIDEO_EXTENSIONS


@dataclass(frozen=True)
class VideoPrediction:
    """What `predict_video` did: the annotated video it wrote (None when asked for results only), its frame count, rate
    and size, and one result per frame (`predict`'s, plus the frame's `frame` index and `time` in seconds)."""

    output: Path | None
    frames: int
    fps: float
    size: tuple[int, int]  # (width, height)
    results: list[dict[str, Any]] = field(default_factory=list)


def open_video_io(source: str | Path, output: str | Path | None) -> tuple[cv2.VideoCapture, Path, Path | None]:
    """The opened video and the checked output path, checked before any frame is read."""
    source = Path(source)
    if output is not None:
        output = Path(output)
        if output.suffix.lower() not in VIDEO_CODECS:
            raise ValueError(f"output {output}: the video suffix must be one of {list(VIDEO_CODECS)}")
    return open_video(source), source, output


def open_writer(output: Path, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
    codec = VIDEO_CODECS[output.suffix.lower()]
    output.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(output), cv2.VideoWriter_fourcc(*codec), fps, size)
    if not writer.isOpened():
        raise OSError(f"output {output}: OpenCV cannot write {codec} video here")
    return writer


def open_video(source: Path) -> cv2.VideoCapture:
    if not source.is_file():
        raise FileNotFoundError(f"video {source}: no such file")
    capture = cv2.VideoCapture(str(source))
    if not capture.isOpened():
        raise ValueError(f"video {source}: OpenCV cannot read it (formats: {', '.join(VIDEO_EXTENSIONS)})")
    return capture
