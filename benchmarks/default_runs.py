"""The three default commands as a new user runs them: wall time from a fresh start (data generation included), the
figure each ends at, and the speed it prints.

Each command runs in its own process, in a new folder, with a new empty data cache (`MOBILENET_SUITE_CACHE`), one
after the other and nothing else running beside them, so the wall time is what a user on this machine waits.
Seeded runs end at slightly different figures on CPUs with AVX2 only and with AVX-512: their kernels round
differently (the header names this CPU's flags).
Usage: python -m benchmarks.default_runs [--tasks detect segment classify detect_v4 segment_v4 classify_v4]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.results import recorded


@dataclass(frozen=True)
class DefaultRun:
    command: tuple[str, ...]
    metric: str  # the monitored metric's row in the printed table
    goal_seconds: float


RUNS = {
    "detect": DefaultRun(("tasks.detect", "fit", "--backbone", "v3_large"), "AP50", 5 * 60),
    "segment": DefaultRun(("tasks.segment", "fit", "--backbone", "v3_large", "--head", "lraspp"), "mIoU", 4 * 60),
    "classify": DefaultRun(("tasks.classify", "fit", "--backbone", "v3_small"), "top1", 3 * 60),
    # MobileNetV4's defaults are held to V3's figures on the same data
    "detect_v4": DefaultRun(("tasks.detect", "fit", "--backbone", "v4_conv_small"), "AP50", 5 * 60),
    "segment_v4": DefaultRun(
        ("tasks.segment", "fit", "--backbone", "v4_conv_medium", "--head", "lraspp"), "mIoU", 4 * 60
    ),
    "classify_v4": DefaultRun(("tasks.classify", "fit", "--backbone", "v4_conv_small"), "top1", 3 * 60),
}


def best_figure(output: str, metric: str) -> str:
    """The metric's value in the table after `best epoch` in the fit summary."""
    summary = output[output.rindex("best epoch") :]
    found = re.search(rf"^{re.escape(metric)}\s+([\d.]+)", summary, flags=re.MULTILINE)
    return found.group(1) if found else "?"


def speed_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(("training:", "validation:", "plots:"))]


def run(task: str, spec: DefaultRun) -> tuple[float, str]:
    with tempfile.TemporaryDirectory() as folder:
        environment = {**os.environ, "MOBILENET_SUITE_CACHE": str(Path(folder) / "cache")}
        command = [sys.executable, "-m", *spec.command, "--trainer.enable_progress_bar", "false"]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=folder, env=environment, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{task}: {' '.join(spec.command)} failed:\n{done.stderr[-3000:]}")
    return seconds, done.stdout


def task_arguments(argv: list[str] | None, description: str | None, tasks: tuple[str, ...]) -> list[str]:
    """The runs that --tasks names, `tasks` by default."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--tasks", nargs="+", default=list(tasks), choices=list(RUNS))
    return parser.parse_args(argv).tasks


def print_runs(tasks: list[str]) -> None:
    """Run each of `tasks` and print the table: wall time, goal, figure, then each run's speed lines."""
    print(f"{'command':<64} {'wall':>7} {'goal':>6} {'figure':>14}")
    details = []
    for task in tasks:
        spec = RUNS[task]
        seconds, output = run(task, spec)
        shown = " ".join(spec.command).replace("tasks.", "python -m tasks.", 1)
        figure = f"{spec.metric} {best_figure(output, spec.metric)}"
        print(f"{shown:<64} {seconds:>6.0f}s {spec.goal_seconds:>5.0f}s {figure:>14}")
        details += [f"{task}: {line}" for line in speed_lines(output)]
    print("\n".join(["", "wall: from the command's start to its end, data generation included", *details]))


def main(argv: list[str] | None = None) -> None:
    tasks = task_arguments(argv, __doc__, tuple(RUNS))
    with recorded(__file__, argv):
        print_runs(tasks)


if __name__ == "__main__":
    main()
