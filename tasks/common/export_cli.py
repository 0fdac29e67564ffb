"""The `export` subcommand of every task: `python -m tasks.<classify|detect|segment> export --ckpt_path ...
[--format onnx|openvino|executorch|...] [--int8 --calibration_batches N --calibration_batch_size M]`.

LightningCLI has no custom subcommands, so `run_cli` hands `export` to `export_main` before building its
LightningCLI. The int8 flags are these, on every task: this is the one int8 command.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from deploy.runtimes import get_runtime, list_runtimes
from tasks.common.export import ExportCheckError, export_checkpoint
from tasks.common.int8 import int8_formats, quantize_export, quantizer
from tasks.registry import get_task

SUBCOMMAND = "export"


def is_export(args: Any = None) -> bool:
    """Whether a task's `main(args)` was asked for `export` (`args` None means the command line)."""
    argv = sys.argv[1:] if args is None else args
    return isinstance(argv, Sequence) and not isinstance(argv, str) and len(argv) > 0 and argv[0] == SUBCOMMAND


def build_parser(task: str) -> argparse.ArgumentParser:
    """`export`'s arguments; `--format` takes any registered runtime, and each runtime adds its own options."""
    size = get_task(task).input_size
    default_size = f"its {size}" if isinstance(size, str) else str(size)
    parser = argparse.ArgumentParser(
        prog=f"python -m tasks.{task} {SUBCOMMAND}",
        description="Export a checkpoint with batch norm folded, then check the file on validation images.",
    )
    parser.add_argument("--ckpt_path", required=True, help="a checkpoint written by this task's fit")
    parser.add_argument("--format", default="onnx", choices=list_runtimes())
    suffixes = ", ".join(get_runtime(name).suffix for name in list_runtimes())
    parser.add_argument("--output", default=None, help=f"default: next to the checkpoint, {suffixes}")
    parser.add_argument("--dynamic_batch", action="store_true", help="a batch size chosen at run time")
    parser.add_argument("--batch_size", type=int, default=1, help="the exported batch size (the example's)")
    parser.add_argument("--image_size", type=int, default=None, help=f"square input side (default: {default_size})")
    parser.add_argument("--num_classes", type=int, default=None, help="must equal the checkpoint's when given")
    parser.add_argument(
        "--end_to_end",
        type=boolean,
        default=True,
        metavar="true|false",
        help="true (default): uint8 RGB input, the task's post-processing and metadata inside the file; false: the "
        "network alone, normalised float input",
    )
    options = get_task(task).end_to_end_options
    if options:
        group = parser.add_argument_group(f"{task} end-to-end options")
        for option, spec in options.items():
            group.add_argument(f"--{option}", **spec)
    int8 = parser.add_argument_group(f"int8 (with --format {', '.join(int8_formats())})")
    int8.add_argument(
        "--int8",
        action="store_true",
        help="also write an int8 model calibrated on train-split images, and print fp32 vs int8 on the val split",
    )
    int8.add_argument("--calibration_batches", type=int, default=8, help="(default %(default)s)")
    int8.add_argument("--calibration_batch_size", type=int, default=16, help="(default %(default)s)")
    added: set[str] = set()
    for name in list_runtimes():
        group = parser.add_argument_group(f"{name} options (with --format {name})")
        for option, spec in get_runtime(name).options.items():
            if option not in added:  # an option two runtimes share is offered once
                group.add_argument(f"--{option}", **spec)
                added.add(option)
    return parser


def boolean(text: str) -> bool:
    """`--end_to_end true|false` (also 1/0, yes/no), as LightningCLI's booleans read."""
    value = text.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def export_main(task: str, args: Sequence[str] | None = None) -> Any:
    """Parse `[export] --ckpt_path ... ` and export; errors are printed as `error: ...` with exit status 2.

    Returns the `ExportResult`; with `--int8`, the `QuantizeResult` (its `fp32` is the `ExportResult`).
    """
    argv = list(sys.argv[1:] if args is None else args)
    if argv[:1] == [SUBCOMMAND]:
        argv = argv[1:]
    parser = build_parser(task)
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if options.int8:
            quantizer(options.format)  # an unsupported format fails before any work
            if options.calibration_batches < 1 or options.calibration_batch_size < 1:
                raise ValueError("--calibration_batches and --calibration_batch_size must be >= 1")
        runtime_options = {option: getattr(options, option) for option in get_runtime(options.format).options}
        task_options = {option: getattr(options, option) for option in get_task(task).end_to_end_options}
        result = export_checkpoint(
            task,
            options.ckpt_path,
            options.format,
            output=options.output,
            dynamic_batch=options.dynamic_batch,
            image_size=options.image_size,
            num_classes=options.num_classes,
            batch_size=options.batch_size,
            end_to_end=options.end_to_end,
            task_options={k: v for k, v in task_options.items() if v not in (None, False)},
            **runtime_options,
        )
        print(result.summary())
        if options.int8:
            result = quantize_export(
                result,
                options.ckpt_path,
                calibration_batches_count=options.calibration_batches,
                batch_size=options.calibration_batch_size,
            )
            print(result.summary())
    except (ValueError, FileNotFoundError, ImportError, ExportCheckError) as error:
        parser.error(str(error))
    return result
