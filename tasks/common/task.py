"""The template task the three tasks derive from: hyperparameters, class names, model and monitored metric set up
in one place, one reporting path for evaluation metrics, and the common callbacks."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from matplotlib.figure import Figure
from pytorch_lightning.callbacks import Callback

from backbones.fuse import fuse
from tasks.common.compile import compiled
from tasks.common.numerics import StopOnNonFiniteLoss
from tasks.common.results import ResultsCallback
from tasks.models import model_name

log = logging.getLogger(__name__)
# batch-norm momentum of models trained from scratch here: running averages that keep up with a short schedule
# (torchvision's 0.01 for V3 and 0.03 for SSDLite left evaluation after a short run on stale statistics)
NORM_MOMENTUM = 0.1


class TaskModule(pl.LightningModule):
    """The base task (torchgeo's `BaseTask`). Each task lists its hyperparameters as typed keyword arguments of its
    own `__init__` and calls `super().__init__()` first, which saves them (less `ignore`: output settings that a
    checkpoint must not override), checks `class_names` against `num_classes` and calls `build_model`.

    `compile` (`--model.compile true`, a run setting kept out of checkpoints) runs training and evaluation through
    `torch.compile` (`tasks.common.compile.compiled`): training steps call `training_model`, evaluation
    `inference_model`, both compiled once per run.

    `monitor` is the validation metric that picks the best checkpoint (higher is better); a checkpoint whose
    `architecture` hyperparameters differ from this run's is refused with a named error.

    Validation and test batches go to `evaluate_batch`; at the epoch end `evaluation_scores` gives the metrics
    (and resets their state), which are logged under `val/` or `test/` (per-class entries, named `x/<class>`,
    only printed), with the count of replaced unreadable samples, and printed as a table by validate / test.
    """

    task: str  # the registered task's name (`tasks.registry`), recorded in every checkpoint
    monitor: str
    architecture: tuple[str, ...] = ("backbone", "num_classes", "width")
    # run settings stay out of the checkpoint: LightningCLI would let a checkpoint's values override them, and a
    # checkpoint of a compiled run loads in an eager one (the compiled callables are not submodules: same keys)
    ignore: tuple[str, ...] = ("predict_dir", "compile")

    def __init__(self, compile: bool = False) -> None:
        super().__init__()
        self.compile_networks = compile
        # from-scratch CPU training produces denormal floats, whose slow path would dominate its time
        torch.set_flush_denormal(True)
        self.save_hyperparameters(ignore=list(self.ignore))
        self._inference_model: tuple[Callable[..., Any], ...] = ()
        self._compiled_model: tuple[Callable[..., Any], ...] = ()  # in tuples: not registered as submodules
        self._compiled_inference: tuple[torch.nn.Module, Callable[..., Any]] | None = None
        num_classes = self.hparams.num_classes
        self.class_names: list[str] = self.hparams.class_names or self.default_class_names(num_classes)
        if len(self.class_names) != num_classes:
            raise ValueError(f"class_names has {len(self.class_names)} entries for num_classes={num_classes}")
        self.build_model()
        # the variant the backbone was built as (weights such as timm's set norm_eps and V1's relu6), recorded, so that
        # a checkpoint rebuilds it when `weights` are not loaded again (validate, predict, export from the file)
        built = getattr(self.model.backbone, "variant_options", {})
        self.hparams["backbone_options"] = {k: v for k, v in built.items() if k not in self.hparams} or None

    def build_model(self) -> None:
        """Set `self.model` from `self.hparams`."""
        raise NotImplementedError

    def hparams_for(self, *names: str) -> dict[str, Any]:
        """The named hyperparameters as keyword arguments, e.g. of the model builder."""
        return {name: self.hparams[name] for name in names}

    def default_class_names(self, num_classes: int) -> list[str]:
        return ["background", *(f"class_{i}" for i in range(1, num_classes))]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Every checkpoint records the task and the registered model name that wrote it."""
        checkpoint["task"] = self.task
        checkpoint["model"] = model_name(self.task, **self.hparams)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A checkpoint of another architecture or class count is a named error, not a state-dict mismatch."""
        saved = checkpoint.get("hyper_parameters", {})
        for key in self.architecture:
            if key in saved and saved[key] != self.hparams[key]:
                path = getattr(self.trainer, "ckpt_path", None) if self._trainer is not None else None
                raise ValueError(
                    f"checkpoint {path or ''} was trained with {key}={saved[key]!r}, this run has "
                    f"{key}={self.hparams[key]!r}; pass the same --{key} or data with the same classes"
                )

    def evaluate_batch(self, batch: Any) -> None:
        raise NotImplementedError

    def evaluation_scores(self) -> dict[str, float]:
        raise NotImplementedError

    def format_scores(self, scores: dict[str, float]) -> str:
        return "  ".join(f"{name} {value:.4f}" for name, value in scores.items())

    def evaluated_images(self, dataset: Any) -> int:
        return len(dataset)

    def prediction_writer(self) -> Callback:
        raise NotImplementedError

    @property
    def training_model(self) -> Callable[..., Any]:
        """What training steps run: `self.model`, or with `compile` its compiled callable (made at the first step)."""
        if not self.compile_networks:
            return self.model
        if not self._compiled_model:
            self._compiled_model = (compiled(self.model),)
        return self._compiled_model[0]

    # Validation, test and predict run `inference_model`: a copy of the network with batch norm folded into its
    # convolutions (the explicit inference speed-up), made as each pass's epoch starts (after callbacks such as weight
    # averaging have swapped their weights in) and dropped as it ends; `self.model` stays the trainable network, norms
    # and all, which checkpoints save. With `compile`, one fused copy is compiled at the first pass and later passes
    # copy the new fused weights into it in place (the compiled code reads the parameters it holds): a fresh copy
    # would be compiled again every validation.
    @property
    def inference_model(self) -> Callable[..., Any]:
        if not self._inference_model:
            raise RuntimeError("inference_model exists only during validation, test and predict")
        return self._inference_model[0]

    def start_inference(self) -> None:
        fused = fuse(self.model)
        if not self.compile_networks:
            self._inference_model = (fused,)  # in a tuple, so that it is not registered as a submodule
            return
        if self._compiled_inference is None:
            self._compiled_inference = (fused, compiled(fused))
        else:
            self._compiled_inference[0].load_state_dict(fused.state_dict())
        self._inference_model = (self._compiled_inference[1],)

    def end_inference(self) -> None:
        self._inference_model = ()

    def on_validation_epoch_start(self) -> None:
        self.start_inference()

    def on_test_epoch_start(self) -> None:
        self.start_inference()

    def on_predict_epoch_start(self) -> None:
        self.start_inference()

    def on_predict_epoch_end(self) -> None:
        self.end_inference()

    def configure_callbacks(self) -> list[Callback]:
        return [self.prediction_writer(), StopOnNonFiniteLoss(), ResultsCallback()]

    def validation_figures(self) -> dict[str, Figure]:
        """named figures of the last validation, written as <name>.png into the run folder"""
        return {}

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.evaluate_batch(batch)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self.evaluate_batch(batch)

    def on_validation_epoch_end(self) -> None:
        self.end_inference()
        self._report("val")

    def on_test_epoch_end(self) -> None:
        self.end_inference()
        self._report("test")

    def evaluation_dataset(self, prefix: str) -> Any:
        datamodule = self.trainer.datamodule
        return datamodule.val_dataset if prefix == "val" else datamodule.test_dataset

    def report_skips(self, dataset: Any, split: str) -> None:
        """Unreadable or invalid samples are replaced by the next good one; say how many, every epoch."""
        skipped = getattr(dataset, "skipped_images", 0)
        if skipped:
            self.log(f"{split}/skipped_images", float(skipped))
            log.warning(
                "%s: %d bad samples replaced by their neighbours (see the warnings naming them)", split, skipped
            )

    def _report(self, prefix: str) -> None:
        dataset = self.evaluation_dataset(prefix)
        self.report_skips(dataset, prefix)
        scores = self.evaluation_scores()
        self.log_dict({f"{prefix}/{name}": value for name, value in scores.items() if "/" not in name})
        if not self.trainer.sanity_checking:
            self.last_scores = scores  # the fit summary prints the best epoch's table from these
            header = f"epoch {self.current_epoch} {prefix}" if self.trainer.state.fn == "fit" else prefix
            self.print(f"\n{header} ({self.evaluated_images(dataset)} images)\n{self.format_scores(scores)}")
