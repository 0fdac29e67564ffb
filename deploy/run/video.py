"""Videos in and out with OpenCV: checking and reading frames as uint8 RGB, and the annotated copy's writer.

The suffixes, codecs and frame reading live here, torch-free, and the tasks' predictors use them
(`tasks.common.video`): .mp4, .m4v and .mov are written as mp4v, .avi as MJPG; a .mkv or .webm source gets an .mp4
copy.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from deploy.run.errors import InputError

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm")
VIDEO_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG"}  # the codec of each written suffix
DEFAULT_FPS = 25.0  # when a video does not say


def open_video(path: Path) -> cv2.VideoCapture:
    """`path` opened for reading; an InputError naming it where OpenCV cannot read it."""
    if not path.is_file():
        raise InputError(f"video {path}: no such file; check the path")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise InputError(f"video {path}: OpenCV cannot open it; convert it to H.264 or MJPG (e.g. with ffmpeg)")
    return capture


def check_video(path: Path) -> None:
    """An InputError unless `path` opens and its first frame decodes."""
    capture = open_video(path)
    try:
        if not capture.read()[0]:
            raise InputError(f"video {path}: no frame could be read; convert it to H.264 or MJPG (e.g. with ffmpeg)")
    finally:
        capture.release()


def frame_rate(capture: cv2.VideoCapture) -> float:
    """The video's frames per second, DEFAULT_FPS where it does not say."""
    return float(capture.get(cv2.CAP_PROP_FPS) or DEFAULT_FPS)


def read_frames(capture: cv2.VideoCapture) -> Iterator[np.ndarray]:
    """The frames of an open video as uint8 RGB [H, W, 3]."""
    while True:
        ok, frame = capture.read()
        if not ok:
            return
        yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def batches_of(frames: Iterator[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    batch: list[np.ndarray] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def annotated_name(source: Path) -> str:
    """The file name of a video's annotated copy: its own where OpenCV writes that suffix, else `<stem>.mp4`."""
    suffix = source.suffix.lower()
    return source.stem + (suffix if suffix in VIDEO_CODECS else ".mp4")


class VideoWriter:
    """An annotated copy, opened at its first frame (whose size it takes); frames are uint8 RGB."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path, self.fps = path, fps
        self.writer: cv2.VideoWriter | None = None

    def write(self, frame: np.ndarray) -> None:
        if self.writer is None:
            codec = VIDEO_CODECS[self.path.suffix.lower()]
            size = (frame.shape[1], frame.shape[0])
            self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*codec), self.fps, size)
            if not self.writer.isOpened():
                raise InputError(f"output {self.path}: OpenCV cannot write {codec} video here")
        self.writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
