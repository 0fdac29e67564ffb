"""The LightningCLI shared by the tasks: `--backbone` and `--width` as top-level flags, data linked into model."""

from __future__ import annotations

from typing import Any

from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from backbones import list_backbones


class TaskCLI(LightningCLI):
    """`python -m tasks.<task> {fit,validate,test,predict} --backbone v3_large [--width 0.75] [--config ...]`."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--backbone", default="v3_large", help=f"one of {list_backbones()}")
        parser.add_argument("--width", type=float, default=1.0, help="width multiplier (alpha)")
        parser.link_arguments("backbone", "model.backbone")
        parser.link_arguments("width", "model.width")
        parser.link_arguments("data.image_size", "model.image_size")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.class_names", "model.class_names", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        if config.get("backbone") not in list_backbones():
            raise SystemExit(f"error: --backbone {config.get('backbone')!r} is not one of {list_backbones()}")


def run_cli(model_class: type, datamodule_class: type, args: Any, trainer_defaults: dict[str, Any]) -> TaskCLI:
    return TaskCLI(
        model_class,
        datamodule_class,
        args=args,
        trainer_defaults=trainer_defaults,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
    )
