"""The LightningCLI shared by the tasks: `--backbone` and `--width` as top-level flags, data linked into model."""

from __future__ import annotations

from typing import Any

from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from backbones import list_backbones
from tasks.common.checkpointing import AtomicCheckpointIO, LastCheckpoint, find_last_checkpoint
from tasks.common.resume import ExactResume
from tasks.common.task import TaskModule


class TaskCLI(LightningCLI):
    """`python -m tasks.<task> {fit,validate,test,predict} --backbone v3_large [--width 0.75] [--config ...]`.

    Subclasses set the default run length (`max_epochs`), add their task's top-level flags in `top_level`
    ({name: (type, default, help)}) and their extra parse-time links in `links` ((source, target) pairs).
    """

    max_epochs: int
    top_level: dict[str, tuple[Any, Any, str]] = {}
    links: tuple[tuple[str, str], ...] = ()

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

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        if config.get("backbone") not in list_backbones():
            raise SystemExit(f"error: --backbone {config.get('backbone')!r} is not one of {list_backbones()}")

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        """Atomic checkpoint writes unless the config names its own plugins (an instance default would not
        serialise into the saved config.yaml)."""
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        if not config.get("trainer", {}).get("plugins"):
            kwargs.setdefault("plugins", [AtomicCheckpointIO()])
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
    next): the best checkpoint by `monitor` (higher is better), exact resumption, no sanity check."""
    filename = f"best-epoch{{epoch}}-{monitor.rsplit('/', 1)[-1].lower()}{{{monitor}:.3f}}"
    best = ModelCheckpoint(monitor=monitor, mode="max", filename=filename, auto_insert_metric_name=False)
    return {
        "max_epochs": max_epochs,
        "num_sanity_val_steps": 0,
        "log_every_n_steps": 10,
        "callbacks": [best, ExactResume()],
    }


def last_checkpoint_path(trainer: Any) -> str:
    """The path of the run's last.ckpt (written by `LastCheckpoint`)."""
    return next(cb.last_model_path for cb in trainer.checkpoint_callbacks if cb.last_model_path)


def run_cli(
    task: str, cli_class: type[TaskCLI], model_class: type[TaskModule], datamodule_class: type, args: Any = None
) -> Any:
    """`python -m tasks.<task> {fit,validate,test,predict,export}`; `args` (a list) lets tests drive it in-process.

    LightningCLI has no custom subcommands, so `export` goes to `deploy.cli` first; imported here, so that importing
    `tasks` never imports `deploy`.
    """
    from deploy.cli import export_main, is_export

    if is_export(args):
        return export_main(task, args)
    return cli_class(
        model_class,
        datamodule_class,
        args=args,
        trainer_defaults=trainer_defaults(model_class.monitor, cli_class.max_epochs),
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
    )
