"""A CLI run over files: every input checked first, then images and videos predicted and their files written
(`writers.py`) into a staging folder published into the output folder at the end (`staging.py`), so that a bad
input stops the run with nothing written."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from deploy.run.errors import InputError
from deploy.run.images import check_image_path, list_images, load_rgb
from deploy.run.model import Model
from deploy.run.staging import staged
from deploy.run.video import (
    VIDEO_EXTENSIONS,
    VideoWriter,
    annotated_name,
    batches_of,
    check_video,
    frame_rate,
    open_video,
    read_frames,
)
from deploy.run.writers import WRITERS, Writer


@dataclass
class Inputs:
    """The images (folders expanded, in name order) and videos of a run, in the order given."""

    images: list[Path] = field(default_factory=list)
    videos: list[Path] = field(default_factory=list)


@dataclass
class Report:
    """What a run did, for the summary: a line per image, frames per video, the files that gather all images."""

    lines: list[tuple[Path, str]] = field(default_factory=list)
    frames: dict[Path, int] = field(default_factory=dict)
    gathered: list[str] = field(default_factory=list)
    totals: str = ""  # what the images' results add up to


def collect_inputs(arguments: list[str]) -> Inputs:
    """The images and videos the arguments name; an InputError for the first that is missing or unreadable."""
    inputs = Inputs()
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            inputs.images += list_images(path)
        elif path.suffix.lower() in VIDEO_EXTENSIONS:
            check_video(path)
            inputs.videos.append(path)
        else:
            check_image_path(path)
            inputs.images.append(path)
    return inputs


def check_names(writer: Writer, inputs: Inputs) -> None:
    """An InputError where two inputs would write the same file (same stem from two folders, say)."""
    owners: dict[str, list[Path]] = {}
    for image in inputs.images:
        for name in writer.image_files(image):
            owners.setdefault(name, []).append(image)
    for video in inputs.videos:
        for name in [annotated_name(video), *writer.video_files(video)]:
            owners.setdefault(name, []).append(video)
    clashes = {name: paths for name, paths in owners.items() if len(paths) > 1}
    if clashes:
        name, paths = next(iter(clashes.items()))
        raise InputError(f"{' and '.join(map(str, paths))} would both write {name}; rename one or run them separately")


def run_files(model: Model, inputs: Inputs, out: Path, batch_size: int, score_threshold: float) -> Report:
    """Predict every input and write its files into `out`, all or nothing."""
    report = Report()
    with staged(out) as folder:
        writer = WRITERS[model.task](folder, model.contract, score_threshold)
        check_names(writer, inputs)
        for start in range(0, len(inputs.images), batch_size):
            paths = inputs.images[start : start + batch_size]
            images = [load_rgb(path) for path in paths]
            for path, image, result in zip(paths, images, model.predict_arrays(images), strict=True):
                report.lines.append((path, writer.image(path, image, result)))
        for video in inputs.videos:
            report.frames[video] = run_video(model, writer, video, folder, batch_size)
        report.gathered = writer.finish()
        report.totals = writer.totals()
    return report


def run_video(model: Model, writer: Writer, source: Path, folder: Path, batch_size: int) -> int:
    """Each frame of `source` predicted, drawn into its annotated copy and given to the writer; the frame count."""
    capture = open_video(source)
    fps = frame_rate(capture)
    copy = VideoWriter(folder / annotated_name(source), fps)
    index = 0
    try:
        for batch in batches_of(read_frames(capture), batch_size):
            for frame, result in zip(batch, model.predict_arrays(batch), strict=True):
                copy.write(writer.annotate(frame, result))
                writer.frame(source, index, index / fps, result)
                index += 1
    finally:
        capture.release()
        copy.close()
    if index == 0:
        raise InputError(f"video {source}: no frame could be read; convert it to H.264 or MJPG (e.g. with ffmpeg)")
    writer.end_video(source)
    return index
