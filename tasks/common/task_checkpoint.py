"""A task checkpoint loaded on the CPU: the task's LightningModule (its own `load_from_checkpoint`, `weights_only`)
and its data module's arguments, after checking that the file is a checkpoint of that task.

Every checkpoint records the task and model name that wrote it (`TaskModule.on_save_checkpoint`); files written
before they did are recognised by their hyper-parameters. `predict`, `export` and int8 load checkpoints here.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tasks.registry import get_task, list_tasks

# checkpoint files a task's hyper-parameters may name that need not exist where the checkpoint is used
WEIGHT_KEYS = ("weights", "backbone_weights")
# what every checkpoint Lightning writes has, and `load_from_checkpoint` reads
LIGHTNING_KEYS = ("state_dict", "hyper_parameters", "pytorch-lightning_version")


@dataclass
class TaskCheckpoint:
    """A task checkpoint loaded on the CPU: the task's LightningModule (eval) and its data module's arguments."""

    task: str
    path: Path
    module: Any
    datamodule_hyper_parameters: dict[str, Any] | None
    # as the file holds them: `module.hparams` has the weight files unset (`load_task`)
    saved_hyper_parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def hparams(self) -> Any:
        return self.module.hparams

    def datamodule(self) -> Any | None:
        """The checkpoint's data module (num_workers 0), or None when the checkpoint does not record one."""
        params = self.datamodule_hyper_parameters
        if not params:
            return None
        kwargs = {k: v for k, v in params.items() if not k.startswith("_")} | {"num_workers": 0}
        return get_task(self.task).datamodule(**kwargs)


def load_task(
    task: str, path: str | Path, num_classes: int | None = None, how: str = "`python -m tasks.{task} export`"
) -> TaskCheckpoint:
    """The task's LightningModule from its own `load_from_checkpoint(map_location="cpu", weights_only=True)`, with
    the weight files its hyper-parameters name unset (the trained state replaces them; they need not exist here).

    Checked first, each a ValueError naming the file: that it is a checkpoint of this task (the hyper-parameters
    must all be arguments of the task class: Lightning would silently drop the others; `how` says how to use one of
    another task) and, when `num_classes` is given, that it equals the checkpoint's; then that the state dict fits
    the model its hyper-parameters build.
    """
    path = Path(path)
    saved = read_checkpoint(path)
    hparams = saved["hyper_parameters"]
    task_class = get_task(task).module
    _check_task(task, saved, path, how)
    saved_classes = hparams.get("num_classes")
    if num_classes is not None and num_classes != saved_classes:
        raise ValueError(
            f"--num_classes {num_classes} does not match {path}, trained with num_classes={saved_classes} (its "
            f"hyper_parameters); the class count is fixed by the trained head: drop --num_classes or pass "
            f"{saved_classes}"
        )
    unset = dict.fromkeys((k for k in WEIGHT_KEYS if k in hparams), None)
    try:
        module = task_class.load_from_checkpoint(path, map_location="cpu", weights_only=True, **unset)
    except RuntimeError as error:  # load_state_dict: missing, unexpected or differently shaped tensors
        described = {k: hparams[k] for k in ("backbone", "width", "num_classes", "head") if k in hparams}
        raise ValueError(
            f"{path}: its state_dict does not fit its own hyper_parameters {described} (e.g. a head with another "
            f"class count): {_shapes_message(error)}"
        ) from error
    return TaskCheckpoint(task, path, module.eval(), saved.get("datamodule_hyper_parameters"), dict(hparams))


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint Lightning wrote (`weights_only` load); FileNotFoundError or ValueError naming `path` otherwise."""
    if not path.is_file():
        raise FileNotFoundError(f"--ckpt_path {path}: no such file")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or not all(key in checkpoint for key in LIGHTNING_KEYS):
        raise ValueError(
            f"{path} is not a task checkpoint (it lacks {', '.join(LIGHTNING_KEYS)}); use one written by "
            "`python -m tasks.<classify|detect|segment> fit`"
        )
    return checkpoint


def _check_task(task: str, saved: dict[str, Any], path: Path, how: str) -> None:
    """A ValueError, naming the task that wrote it, when the checkpoint is not one of `task`'s: by the task it
    records (`TaskModule.on_save_checkpoint`), or, in a file written before checkpoints recorded it, when its
    hyper-parameters are not all arguments of the task's class (the one task whose arguments they are wrote it)."""
    owner = saved.get("task")
    if owner == task:
        return
    if owner is None:
        hparams = saved["hyper_parameters"]
        unknown = _unknown_arguments(get_task(task).module, hparams)
        if not unknown:
            return
        owners = [name for name in list_tasks() if not _unknown_arguments(get_task(name).module, hparams)]
        owner = owners[0] if len(owners) == 1 else None
        reason = f"its hyper_parameters {unknown} are not arguments of {get_task(task).module.__name__}"
    else:
        reason = f"it records task {owner!r}"
    known = owner in list_tasks()
    where = how.format(task=owner, predictor=get_task(owner).predictor.__name__) if known else None
    raise ValueError(
        f"{path} is {'a ' + owner if known else 'not a'} task checkpoint, not a {task} one ({reason}); use it with "
        f"{where or 'the task that wrote it'}"
    )


def _unknown_arguments(task_class: Any, hparams: dict[str, Any]) -> list[str]:
    accepted = inspect.signature(task_class.__init__).parameters
    return sorted(k for k in hparams if not k.startswith("_") and k not in accepted)


def _shapes_message(error: RuntimeError) -> str:
    """torch's load_state_dict error on one line, shapes written `key [8, 16] in the file, [10, 16] ...`."""
    message = re.sub(
        r"size mismatch for (\S+): copying a param with shape torch\.Size\((\[[^\]]*\])\) from checkpoint, "
        r"the shape in current model is torch\.Size\((\[[^\]]*\])\)",
        r"\1 \2 in the file, \3 for the hyper-parameters",
        str(error),
    )
    return " ".join(message.split())
