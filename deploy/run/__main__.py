"""`python -m deploy.run MODEL_FILE INPUTS... --out DIR`: an exported model run on images, folders and videos,
without torch, writing what `python -m tasks.<task> predict` writes (`writers.py`), plus for each video an
annotated copy and its per-frame results.

A bad input (a model file that is missing, not a model or not one of ours; an image that does not decode; a video
that does not open) stops the run with one message naming the file and what to do, exit status 2, and nothing
written: inputs are checked before any is run, and the files go to a temporary folder that moves into DIR only
when every input has run (`staging.py`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deploy.metadata import MetadataError
from deploy.run.drawing import DRAW_SCORE_THRESHOLD
from deploy.run.errors import InputError
from deploy.run.model import DEFAULT_BATCH_SIZE, Model, load
from deploy.run.run_files import Inputs, Report, collect_inputs, run_files

DEFAULT_OUT = "predictions"  # as `python -m tasks.<task> predict`
LISTED_IMAGES = 20  # at most this many images get a line of their own in the summary


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(
        prog="python -m deploy.run",
        description="Run an exported model (.onnx, OpenVINO .xml) on images, folders and videos, without torch.",
    )
    parse.add_argument("model", help="the exported model file (`python -m tasks.<task> export`)")
    parse.add_argument("inputs", nargs="+", help="images, folders of images, videos (.mp4 .m4v .mov .avi .mkv .webm)")
    parse.add_argument("--out", default=DEFAULT_OUT, help=f"the folder to write into (default: {DEFAULT_OUT})")
    parse.add_argument("--batch_size", type=positive, default=DEFAULT_BATCH_SIZE, help="images per run")
    parse.add_argument("--threads", type=positive, default=None, help="the runtime's threads (default: its own)")
    parse.add_argument(
        "--score_threshold",
        type=float,
        default=DRAW_SCORE_THRESHOLD,
        help=f"detection: draw detections scoring at least this (default {DRAW_SCORE_THRESHOLD})",
    )
    return parse


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def summary(model: Model, inputs: Inputs, report: Report, out: Path) -> str:
    """What was run, on how much, and where the files went."""
    threads = f", {counted(model.backend.threads, 'thread')}" if model.backend.threads else ""
    lines = [f"deploy.run: {model.task} model {model.contract.model} from {model.path} ({model.backend.name}{threads})"]
    if len(report.lines) <= LISTED_IMAGES:
        lines += [f"  {path}: {line}" for path, line in report.lines]
    lines += [f"  {video}: {frames} frames" for video, frames in report.frames.items()]
    ran = [counted(len(inputs.images), "image")] + ([counted(len(inputs.videos), "video")] if inputs.videos else [])
    totals = f": {report.totals}" if report.totals else ""
    written = report.gathered + (["annotated videos"] if inputs.videos else [])
    lines.append(f"{' and '.join(ran)}{totals} -> {out}/" + (f" ({', '.join(written)})" if written else ""))
    return "\n".join(lines)


def counted(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; 0 on success, 2 on a bad input (one message on stderr, nothing written)."""
    args = parser().parse_args(argv)
    out = Path(args.out)
    try:
        model = load(args.model, threads=args.threads)
        inputs = collect_inputs(args.inputs)
        report = run_files(model, inputs, out, args.batch_size, args.score_threshold)
    except (InputError, MetadataError) as error:
        print(f"deploy.run: error: {error}", file=sys.stderr)
        return 2
    print(summary(model, inputs, report, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
