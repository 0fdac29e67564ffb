"""Peak memory per epoch of the default detection training: it must not grow after the first epoch.

Runs `python -m tasks.detect fit --backbone v3_large` (synthetic data, 2 loader workers) for 3 epochs and
prints, per epoch, the peak resident memory of the training process (VmHWM, reset at each epoch start via
/proc/self/clear_refs) and the summed peak of its DataLoader worker processes. Growth after the first epoch
would mean a leak in the data pipeline or in metric state (detections kept across evaluations, say).
Usage: python -m benchmarks.detection_memory [--epochs 3] [any extra tasks.detect arguments]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

from benchmarks.results import recorded
from tasks.detect.task import main as detect_main


def _status_mb(pid: int | str, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        children += [int(child) for child in text]
    return children


def _reset_peak(pid: int | str) -> None:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # 5: reset the peak RSS (VmHWM) to the current RSS
    except OSError:
        pass


class PeakMemoryPerEpoch(Callback):
    """Records (main peak MB, workers' summed peak MB) for every training epoch (validation included)."""

    def __init__(self) -> None:
        self.peaks: list[tuple[float, float]] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for pid in [os.getpid(), *_children(os.getpid())]:
            _reset_peak(pid)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        workers = sum(_status_mb(child, "VmHWM") for child in _children(os.getpid()))
        self.peaks.append((_status_mb("self", "VmHWM"), workers))
        print(f"\nepoch {trainer.current_epoch}: peak RSS main {self.peaks[-1][0]:.0f} MB, workers {workers:.0f} MB")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=3)
    args, extra = parser.parse_known_args(argv)
    cli = detect_main(
        ["fit", "--backbone", "v3_large", "--trainer.max_epochs", str(args.epochs), "--trainer.logger", "false"]
        + ["--trainer.callbacks+=benchmarks.detection_memory.PeakMemoryPerEpoch", *extra]
    )
    # the CLI imports this module by name, apart from `__main__`: match the class by name
    (monitor,) = [cb for cb in cli.trainer.callbacks if type(cb).__name__ == PeakMemoryPerEpoch.__name__]
    with recorded(__file__, argv):
        print(f"{'epoch':>5} {'main MB':>8} {'workers MB':>11} {'total MB':>9}")
        for epoch, (main_mb, workers_mb) in enumerate(monitor.peaks):
            print(f"{epoch:>5} {main_mb:>8.0f} {workers_mb:>11.0f} {main_mb + workers_mb:>9.0f}")
        first = sum(monitor.peaks[0])
        growth = max(sum(p) for p in monitor.peaks[1:]) - first if len(monitor.peaks) > 1 else 0.0
        print(f"largest growth after epoch 0: {growth:+.0f} MB ({growth / first:+.1%}; goal: no growth beyond noise)")


if __name__ == "__main__":
    main()
