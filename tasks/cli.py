"""The LightningCLI shared by the tasks: `--backbone` and `--width` as top-level flags, data linked into model."""

from __future__ import annotations

from typing import Any

from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from backbones import list_backbones


class TaskCLI(LightningCLI):
    """`python -m tasks.<task> {fit,validate,test,predict} --backbone v3_large [--width 0.75] [--config ...]`.

    Subclasses add their task's top-level flags in `top_level` ({name: (type, default, help)}) and their extra
    parse-time links in `links` ((source, target) pairs).
    """

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

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        if config.get("backbone") not in list_backbones():
            raise SystemExit(f"error: --backbone {config.get('backbone')!r} is not one of {list_backbones()}")


def check_checkpoint_matches(module: Any, checkpoint: dict[str, Any], keys: tuple[str, ...]) -> None:
    """For `on_load_checkpoint`: a checkpoint of another architecture or class count is a named error."""
    saved = checkpoint.get("hyper_parameters", {})
    for key in keys:
        if key in saved and saved[key] != module.hparams[key]:
            path = getattr(module.trainer, "ckpt_path", None) if module._trainer is not None else None
            raise ValueError(
                f"checkpoint {path or ''} was trained with {key}={saved[key]!r}, this run has "
                f"{key}={module.hparams[key]!r}; pass the same --{key} or data with the same classes"
            )


def run_cli(
    cli_class: type[TaskCLI], model_class: type, datamodule_class: type, args: Any, trainer_defaults: dict[str, Any]
) -> TaskCLI:
    return cli_class(
        model_class,
        datamodule_class,
        args=args,
        trainer_defaults=trainer_defaults,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
    )
