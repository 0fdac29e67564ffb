"""What a run shows its user: the fit summary, `results.png` (training curves) and the task's validation figures in
the run folder, refreshed after every validation, and the same PNGs in TensorBoard when it is the logger.

Figures are drawn on `matplotlib.figure.Figure` objects (saved through the Agg canvas), never through pyplot, so
that no global backend is switched and nothing opens a window.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pytorch_lightning as pl
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

from tasks.common.run_speed import RunSpeed

CURVES = "results"  # results.png: losses, learning rate and validation metrics by epoch
# Drawing may take at most this share of a fit: after the first validation, the plots are redrawn only while the
# drawing so far, this drawing and the fit's last (always drawn at its end), each costing as much as the last one,
# fit in PLOT_SHARE of the time since the fit started.
PLOT_SHARE = 0.05


class ResultsCallback(Callback):
    """Keeps the history of what was logged (training losses and learning rate by step, validation scalars by
    epoch), writes `results.png` and the task's `validation_figures()` as `<name>.png` into the run folder after
    each validation (not the sanity check; in a fit, within PLOT_SHARE of its time), adds them to TensorBoard, and
    prints the fit summary at the end, with the run's speed (`RunSpeed`)."""

    def __init__(self) -> None:
        self.steps: dict[str, list[tuple[int, float]]] = defaultdict(list)
        self.epochs: dict[str, list[tuple[int, float]]] = defaultdict(list)
        self.scores: dict[int, dict[str, float]] = {}
        self._started = 0.0
        self.speed: RunSpeed | None = None  # clocked during fit only
        self._drawing_seconds = 0.0  # this fit's so far
        self._last_drawing_cost = 0.0
        self._undrawn = False  # a fit's validation whose plots wait for a later one, or for the fit's end

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started = time.perf_counter()
        self.speed = RunSpeed()
        folder = run_folder(trainer)
        kinds = " + ".join(logger_kind(logger) for logger in trainer.loggers) or "no logger"
        pl_module.print(f"run folder: {folder} (logs: {kinds})")

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.speed is not None:
            self.speed.train_epoch_started()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.speed is not None:
            self.speed.train_batch_done(len(batch[0]) * trainer.world_size)
        step = trainer.global_step
        for name, value in trainer.callback_metrics.items():
            if name.startswith("train/") and value.numel() == 1:
                self.steps[name].append((step, float(value)))
        if trainer.optimizers:
            self.steps["lr"].append((step, float(trainer.optimizers[0].param_groups[0]["lr"])))

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.speed is not None and not trainer.sanity_checking:
            self.speed.evaluation_started()

    def on_validation_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, *args: Any
    ) -> None:
        if self.speed is not None and not trainer.sanity_checking:
            self.speed.evaluation_batch_done(len(batch[0]) * trainer.world_size)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        if self.speed is not None:
            self.speed.evaluation_done()
        folder = Path(run_folder(trainer))  # a collective call under DDP: every rank
        if not trainer.is_global_zero:
            return
        epoch = trainer.current_epoch
        if trainer.state.fn == "fit":
            for name, value in trainer.callback_metrics.items():
                if name.startswith("val/") and value.numel() == 1 and not name.endswith("skipped_images"):
                    self.epochs[name] = [(e, v) for e, v in self.epochs[name] if e != epoch] + [(epoch, float(value))]
            self.scores[epoch] = dict(getattr(pl_module, "last_scores", {}) or {})
            elapsed = time.perf_counter() - self._started
            if self._drawing_seconds + 2 * self._last_drawing_cost > PLOT_SHARE * elapsed:
                self._undrawn = True
                return
        self.draw(trainer, pl_module, folder)

    def draw(self, trainer: pl.Trainer, pl_module: pl.LightningModule, folder: Path) -> None:
        """`results.png` and the last validation's figures into `folder` and TensorBoard (rank 0 only)."""
        started = time.perf_counter()
        figures = dict(pl_module.validation_figures()) if hasattr(pl_module, "validation_figures") else {}
        if self.epochs:
            figures = {CURVES: self.curves(getattr(pl_module, "monitor", "")), **figures}
        folder.mkdir(parents=True, exist_ok=True)
        for name, figure in figures.items():
            path = folder / f"{name}.png"
            figure.savefig(path, dpi=100)
            figure.clear()
            for logger in trainer.loggers:
                if isinstance(logger, TensorBoardLogger):
                    with Image.open(path) as image:
                        pixels = np.asarray(image.convert("RGB"))
                    logger.experiment.add_image(f"plots/{name}", pixels, trainer.global_step, dataformats="HWC")
        self._last_drawing_cost = time.perf_counter() - started
        self._drawing_seconds += self._last_drawing_cost
        self._undrawn = False
        if self.speed is not None:
            self.speed.add_drawing(self._last_drawing_cost)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        folder = Path(run_folder(trainer))  # a collective call under DDP: every rank
        if self._undrawn and trainer.is_global_zero:
            self.draw(trainer, pl_module, folder)
        monitor = getattr(pl_module, "monitor", "")
        lines = [f"\nfit done in {format_duration(time.perf_counter() - self._started)}"]
        best = best_checkpoint(trainer, monitor)
        history = self.epochs.get(monitor, [])
        if history:
            epoch, value = max(history, key=lambda item: item[1])
            lines.append(f"best epoch {epoch}: {monitor} {value:.4f}")
            scores = self.scores.get(epoch)
            if scores:
                lines.append(pl_module.format_scores(scores))
        if best is not None and best.best_model_path:
            lines.append(f"best checkpoint: {best.best_model_path}")
        last = next((cb.last_model_path for cb in trainer.checkpoint_callbacks if cb.last_model_path), "")
        if last:
            lines.append(f"last checkpoint: {last}")
        lines.append(f"plots and logs: {folder}")
        if self.speed is not None:
            lines.append(self.speed.summary())
        pl_module.print("\n".join(lines))

    def curves(self, monitor: str) -> Figure:
        """One panel per training loss and the learning rate (by step), and the validation metrics by epoch, the
        monitored one drawn bold."""
        panels = [name for name in sorted(self.steps) if name != "lr"] + (["lr"] if "lr" in self.steps else [])
        count = len(panels) + 1
        columns = min(count, 3)
        rows = math.ceil(count / columns)
        figure = Figure(figsize=(4.2 * columns, 3.2 * rows), layout="constrained")
        axes = figure.subplots(rows, columns, squeeze=False).ravel()
        for ax, name in zip(axes, panels, strict=False):
            steps, values = zip(*self.steps[name], strict=True)
            ax.plot(steps, values, linewidth=0.8, label=name)
            ax.set_title("learning rate" if name == "lr" else name)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        ax = axes[len(panels)]
        colours = matplotlib.colormaps["tab20"].colors  # COCO's 13 metrics need more than the default 10 colours
        for index, name in enumerate(sorted(self.epochs)):
            epochs, values = zip(*self.epochs[name], strict=True)
            bold = name == monitor
            ax.plot(
                epochs, values, marker="o", linewidth=2.2 if bold else 0.9, label=name, zorder=3 if bold else 2,
                color=colours[index % len(colours)],
            )  # fmt: skip
        ax.set_title(f"validation (monitored: {monitor})" if monitor else "validation")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if self.epochs:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)  # beside the curves
        for unused in axes[count:]:
            unused.set_visible(False)
        return figure


def run_folder(trainer: pl.Trainer) -> str:
    """The run's folder: the first logger's versioned folder, else the trainer's root (as checkpoints)."""
    return str(trainer.log_dir or trainer.default_root_dir)


def logger_kind(logger: Any) -> str:
    for kind in (TensorBoardLogger, CSVLogger):
        if isinstance(logger, kind):
            return kind.__name__.removesuffix("Logger")
    return type(logger).__name__


def best_checkpoint(trainer: pl.Trainer, monitor: str) -> ModelCheckpoint | None:
    return next((cb for cb in trainer.checkpoint_callbacks if getattr(cb, "monitor", None) == monitor), None)


def format_duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"
