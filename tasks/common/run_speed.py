"""The speed of a fit, printed in its summary so that runs on different machines can be compared: training steps/s
and images/s (waiting for data included), evaluation images/s (metrics included), and the seconds spent drawing
the plots after each validation, as a share of the run."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class Phase:
    """Seconds, steps and images of one kind of work, accumulated over the run."""

    seconds: float = 0.0
    steps: int = 0
    images: int = 0

    def add(self, seconds: float, images: int) -> None:
        self.seconds += seconds
        self.steps += 1
        self.images += images

    def rate(self, count: int) -> float:
        return count / self.seconds if self.seconds > 0 else 0.0


class RunSpeed:
    """Clocks the `ResultsCallback` runs: `train_epoch_started` and `train_batch_done` for training,
    `evaluation_started`, `evaluation_batch_done` and `evaluation_done` around each validation pass, `add_drawing`
    for its plots.

    A training step is one training batch; its time runs from the end of the previous step (or the epoch's start)
    to its own end, less any validation and drawing in between, so it includes the wait for its batch. Images are
    counted on every process (`world_size` times one rank's)."""

    def __init__(self) -> None:
        self.training = Phase()
        self.evaluation = Phase()
        self.evaluation_passes = 0
        self.drawing_seconds = 0.0
        self._started = time.perf_counter()
        self._last_step_end: float | None = None
        self._evaluation_start: float | None = None
        self._evaluation_images = 0

    def train_epoch_started(self) -> None:
        self._last_step_end = time.perf_counter()

    def train_batch_done(self, images: int) -> None:
        now = time.perf_counter()
        if self._last_step_end is not None:
            self.training.add(now - self._last_step_end, images)
        self._last_step_end = now

    def evaluation_started(self) -> None:
        self._evaluation_start, self._evaluation_images = time.perf_counter(), 0

    def evaluation_batch_done(self, images: int) -> None:
        self._evaluation_images += images

    def evaluation_done(self) -> None:
        if self._evaluation_start is None:
            return
        seconds = time.perf_counter() - self._evaluation_start
        self.evaluation.seconds += seconds
        self.evaluation.images += self._evaluation_images
        self.evaluation_passes += 1
        self._evaluation_start = None
        self._pause_training_clock(seconds)

    def add_drawing(self, seconds: float) -> None:
        self.drawing_seconds += seconds
        self._pause_training_clock(seconds)

    def _pause_training_clock(self, seconds: float) -> None:
        """A validation inside a training epoch is not the next training step's time."""
        if self._last_step_end is not None:
            self._last_step_end += seconds

    def summary(self) -> str:
        """One line per phase that ran."""
        elapsed = time.perf_counter() - self._started
        lines = []
        if self.training.steps:
            t = self.training
            lines.append(
                f"training: {t.steps} steps in {t.seconds:.0f} s, {t.rate(t.steps):.2f} steps/s, "
                f"{t.rate(t.images):.1f} images/s"
            )
        if self.evaluation_passes:
            e = self.evaluation
            lines.append(
                f"validation: {self.evaluation_passes} passes, {e.images} images in {e.seconds:.0f} s, "
                f"{e.rate(e.images):.1f} images/s"
            )
        if self.drawing_seconds:
            share = 100 * self.drawing_seconds / elapsed if elapsed > 0 else 0.0
            lines.append(f"plots: {self.drawing_seconds:.1f} s ({share:.1f}% of the run)")
        return "\n".join(lines)
