"""The LightningCLI shared by the tasks: `--backbone` and `--width` as top-level flags, data linked into model."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from lightning_fabric.loggers.tensorboard import _TENSORBOARD_AVAILABLE
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
from pytorch_lightning.loggers import CSVLogger, Logger, TensorBoardLogger

from backbones import list_backbones
from backbones.weights import WeightsEntry
from backbones.weights.loaders import WeightsVariantError
from backbones.weights.reader import load_file
from tasks.common.checkpointing import AtomicCheckpointIO, LastCheckpoint, find_last_checkpoint
from tasks.common.cli_settings import TaskShape, checkpoint_path, cli_settings, given_flags
from tasks.common.export_cli import export_main, is_export
from tasks.common.formats import DatasetNotFoundError
from tasks.common.resume import ExactResume
from tasks.registry import get_task


class ArgumentValueError(ValueError):
    """An argument value rejected while the CLI builds the model, data module and trainer (`TaskCLI`); the
    rejecting error is its `__cause__`."""


class TaskCLI(LightningCLI):
    """`python -m tasks.<task> {fit,validate,test,predict} --backbone v3_large [--width 0.75] [--config ...]`.

    Subclasses set the default run length (`max_epochs`), add their task's top-level flags in `top_level`
    ({name: (type, default, help)}), their extra parse-time links in `links` ((source, target) pairs) and the
    settings a task model's named weights bring beyond mean/std (`weights_settings`). What a checkpoint
    (`validate`/`test`/`predict --ckpt_path`) and named weights set is `cli_settings`, applied in
    `before_instantiate_classes`.
    """

    max_epochs: int
    top_level: dict[str, tuple[Any, Any, str]] = {}
    links: tuple[tuple[str, str], ...] = ()

    def __init__(self, *args: Any, given: Collection[str] = (), **kwargs: Any) -> None:
        """LightningCLI's arguments, plus the keys of the flags on the command line (`cli_settings.given_flags`): a
        flag given with its default value is still explicit."""
        self.given_flags = frozenset(given)
        super().__init__(*args, **kwargs)

    @staticmethod
    def weights_settings(entry: WeightsEntry) -> dict[str, Any]:
        """Config values that named weights of the task's model (`--model.weights`) set unless given explicitly
        (e.g. the detector's input size); a backbone's ImageNet size is not the task's, so none come from those."""
        return {}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--backbone", default="v3_large", help=f"one of {list_backbones()}")
        parser.add_argument("--width", type=float, default=1.0, help="width multiplier (alpha)")
        parser.link_arguments("backbone", "model.backbone")
        parser.link_arguments("width", "model.width")
        for name, (kind, default, help_text) in self.top_level.items():
            parser.add_argument(f"--{name}", type=kind, default=default, help=help_text)
            parser.link_arguments(name, f"model.{name}")
        for source, target in self.links:
            parser.link_arguments(source, target)
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.class_names", "model.class_names", apply_on="instantiate")
        parser.add_lightning_class_args(LastCheckpoint, "last_checkpoint")

    def shape(self) -> TaskShape:
        """What `cli_settings` needs to know of this task's CLI."""
        formats = getattr(self.datamodule_class, "formats", None)
        locators = [f"data.{option}" for option in (formats.options() if formats is not None else ())]
        return TaskShape(
            task=self.model_class.task,
            architecture=tuple(getattr(self.model_class, "architecture", ())),
            top_level=("backbone", "width", *self.top_level),
            links=self.links,
            data_locators=("data.format", "data.root", *locators),
            weights_settings=self.weights_settings,
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse, then keep the configuration as parsed (`parsed`) and read the `--ckpt_path` checkpoint that
        `cli_settings` takes settings from: Lightning's own merge of a checkpoint's hyper-parameters, which runs next,
        overwrites `model.*` (and lets the top-level `--backbone` default win), so `before_instantiate_classes`
        starts again from the parsed values; a file that is missing or cannot be read is one error line."""
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        self.parsed = (self.config[subcommand] if subcommand else self.config).clone()
        path = checkpoint_path(subcommand, self.parsed)
        self.checkpoint: Mapping[str, Any] | None = None
        if path is not None:
            if not Path(path).is_file():
                raise SystemExit(f"error: --ckpt_path {path}: no such file")
            try:
                loaded = load_file(path, "checkpoint")
            except ValueError as error:
                raise SystemExit(f"error: --ckpt_path {error}") from None
            self.checkpoint = loaded if isinstance(loaded, Mapping) else {}

    def before_instantiate_classes(self) -> None:
        """The settings from the checkpoint and from named weights (`cli_settings`) applied; an unknown backbone or
        an architecture flag that contradicts the checkpoint is one error line; weights contradicted are warned of."""
        parser = self._parser(self.subcommand)
        config = self.config[self.subcommand] if self.subcommand else self.config
        if self.checkpoint is not None:  # the parsed values, not Lightning's merge of the checkpoint's
            config = self.parsed.clone()
        defaults = dict(parser.get_defaults().items())
        try:
            settings = cli_settings(
                self.subcommand, dict(config.items()), defaults, self.given_flags, self.checkpoint, self.shape()
            )
        except ValueError as error:
            raise SystemExit(f"error: {error}") from None
        if self.checkpoint is not None:
            self.config[self.subcommand] = config
        for key, value in settings.updates.items():
            config[key] = value
        if config.get("backbone") not in list_backbones():
            raise SystemExit(f"error: --backbone {config.get('backbone')!r} is not one of {list_backbones()}")
        for warning in settings.warnings:
            logging.getLogger(__name__).warning(warning)
        for note in settings.notes:
            print(note)

    def instantiate_classes(self) -> None:
        """A value that the model, the data module or the trainer rejects while being built from the arguments
        (`--width 0`, an unknown `--model.backbone_options` key, `--data.val_fraction 2`) is an argument error:
        `ArgumentValueError`, which `run_cli` ends with as one line."""
        try:
            super().instantiate_classes()
        except (ValueError, TypeError) as error:
            raise ArgumentValueError(str(error)) from error

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        """Atomic checkpoint writes unless the config names its own plugins (an instance default would not
        serialise into the saved config.yaml); the default loggers (`default_loggers`) unless it names its own."""
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        trainer = config.get("trainer", {})
        if not trainer.get("plugins"):
            kwargs.setdefault("plugins", [AtomicCheckpointIO()])
        if trainer.get("logger") in (None, True):
            kwargs.setdefault("logger", default_loggers(trainer.get("default_root_dir") or os.getcwd()))
        return super().instantiate_trainer(**kwargs)

    def before_fit(self) -> None:
        """`--ckpt_path last`: the newest last.ckpt under the run's root, from whichever earlier run wrote it."""
        config = self.config_init[self.subcommand]
        if config.get("ckpt_path") == "last":
            found = find_last_checkpoint(self.trainer.default_root_dir)
            if found is None:
                raise SystemExit(f"error: --ckpt_path last: no last.ckpt under {self.trainer.default_root_dir}")
            print(f"resuming from {found}")
            config["ckpt_path"] = str(found)


def trainer_defaults(monitor: str, max_epochs: int) -> dict[str, Any]:
    """The tasks' Trainer defaults, fresh per run (a callback instance must not carry one run's paths into the
    next): the best checkpoint by `monitor` (higher is better), exact resumption, no sanity check. The loggers are
    set in `TaskCLI.instantiate_trainer` (`default_loggers`: TensorBoard + CSV, or CSV alone without tensorboard)."""
    filename = f"best-epoch{{epoch}}-{monitor.rsplit('/', 1)[-1].lower()}{{{monitor}:.3f}}"
    best = ModelCheckpoint(monitor=monitor, mode="max", filename=filename, auto_insert_metric_name=False)
    return {
        "max_epochs": max_epochs,
        "num_sanity_val_steps": 0,
        "log_every_n_steps": 10,
        "callbacks": [best, ExactResume()],
    }


class CompanionCSVLogger(CSVLogger):
    """metrics.csv in the same versioned folder as the TensorBoard logger it accompanies (its own version count
    would see TensorBoard's new folder and take the next one)."""

    def __init__(self, companion: TensorBoardLogger) -> None:
        super().__init__(companion.save_dir, name=companion.name)
        self._companion = companion

    @property
    def version(self) -> int | str:
        return self._companion.version

    @property
    def experiment(self) -> Any:
        if self._experiment is None:
            with warnings.catch_warnings():  # the folder is TensorBoard's, already holding its event file
                warnings.filterwarnings("ignore", message=r"Experiment logs directory .* exists and is not empty")
                return super().experiment
        return self._experiment


def default_loggers(root: str) -> list[Logger]:
    """The run's loggers when the config names none (Lightning's own default would pick one, with a notice):
    TensorBoard (scalars and the plots) plus metrics.csv in `<root>/lightning_logs/version_N` when `tensorboard`
    is installed (`pip install -e ".[tensorboard]"`), else metrics.csv alone there."""
    if _TENSORBOARD_AVAILABLE:
        tensorboard = TensorBoardLogger(root)
        return [tensorboard, CompanionCSVLogger(tensorboard)]
    return [CSVLogger(root)]


class _DropMessages(logging.Filter):
    def __init__(self, *fragments: str) -> None:
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(fragment in message for fragment in self.fragments)


# Lightning's info lines that our defaults trigger and that ask nothing of the user
_LIGHTNING_TIPS = _DropMessages("💡 Tip:", "Loading `train_dataloader` to estimate number of stepping batches")


def quiet_library_notices() -> None:
    """Filter, at their source, the notices that this project's defaults trigger and that a user cannot act on.

    Each filter names the message and the module that issues it. Nothing is filtered when the user chose their own
    warning filters (`python -W ...` or PYTHONWARNINGS), so those always win.
    """
    if sys.warnoptions or os.environ.get("PYTHONWARNINGS"):
        return
    notices = [  # (message regex, issuing module regex)
        # Lightning's own calls of jsonargparse APIs deprecated in jsonargparse 4.49
        (
            r"\s*(By default only one JsonargparseDeprecationWarning|``ArgumentParser\.add_instantiator``"
            r"|``instantiate_classes``|skip_none parameter)",
            r"pytorch_lightning\.cli",
        ),
        # Lightning's pytree helper against torch >= 2.9's LeafSpec deprecation
        (r"`isinstance\(treespec, LeafSpec\)` is deprecated", r"pytorch_lightning\.utilities\._pytree"),
        # main([...]) driven from Python (tests, notebooks) while sys.argv holds the host program's arguments
        (r"LightningCLI's args parameter is intended to run from within Python", r"pytorch_lightning\.cli"),
        # validate/test/predict from a checkpoint write into a new run folder: the checkpoint callback's dirpath moves
        (
            r"The dirpath has changed from .* therefore `best_model_score`",
            r"pytorch_lightning\.callbacks\.model_checkpoint",
        ),
        # validate/test/predict with EMA: the checkpoint's state dict already holds the average (its text says so)
        (
            r"You're using the WeightAveraging callback, but loading a checkpoint outside the 'fit' stage",
            r"pytorch_lightning\.callbacks\.weight_averaging",
        ),
        # pycocotools' RLE decoding under numpy 2
        (r"__array__ implementation doesn't accept a copy keyword", r"pycocotools\.mask"),
    ]
    for message, module in notices:
        warnings.filterwarnings("ignore", message=message, module=module)
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if _LIGHTNING_TIPS not in logger.filters:
            logger.addFilter(_LIGHTNING_TIPS)


def run_cli(task: str, args: Any = None) -> Any:
    """`python -m tasks.<task> {fit,validate,test,predict,export}`; `args` (a list) lets tests drive it in-process.

    From the command line (`args` None), data that is not where the arguments say (DatasetNotFoundError), named
    weights asked of another model variant (WeightsVariantError) and any value the model, data module or trainer
    rejects while being built (ArgumentValueError) end the run with their message as one `error: ...` line, as
    argument errors do, not a traceback.

    The task's classes come from its registered spec (`tasks.registry`); LightningCLI has no custom subcommands, so
    `export` goes to `export_main` first. The command line is read here once: the keys of its flags go to the CLI
    (`given`, `cli_settings.given_flags`), `args` as it came to LightningCLI (None: Lightning parses `sys.argv` without
    its warning for `args` passed beside a command line).
    """
    spec = get_task(task)
    cli_class, model_class = spec.cli, spec.module
    argv = sys.argv[1:] if args is None else args
    if is_export(argv):
        return export_main(task, args)
    quiet_library_notices()
    try:
        return cli_class(
            model_class,
            spec.datamodule,
            args=args,
            given=given_flags(argv),
            trainer_defaults=trainer_defaults(model_class.monitor, cli_class.max_epochs),
            seed_everything_default=0,  # Lightning's default (True) seeds 0 too, with a "No seed found" warning
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
        )
    except (DatasetNotFoundError, WeightsVariantError, ArgumentValueError) as error:
        if args is not None:  # driven from Python: the caller gets the exception itself
            if isinstance(error, ArgumentValueError):
                raise error.__cause__ from None
            raise
        raise SystemExit(f"error: {error}") from None
