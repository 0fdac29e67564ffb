"""Lightning tasks: detection, segmentation and classification (one package each), what they share (common), and
the two registries: models by name (`get_model`, `list_models`) and tasks by name (`get_task`, `list_tasks`).

Each task registers itself and its models in its `spec.py`, imported here, as torchvision's `models` package imports
its model modules so that `get_model` knows them all.
"""

from tasks.classify import spec as _classify  # noqa: F401  (registers the task and its models)
from tasks.detect import spec as _detect  # noqa: F401
from tasks.models import ModelEntry, find_model, get_model, list_models, model_entry, model_name, register_model
from tasks.registry import TaskSpec, get_task, list_tasks, register_task
from tasks.segment import spec as _segment  # noqa: F401

__all__ = [
    "ModelEntry",
    "TaskSpec",
    "find_model",
    "get_model",
    "get_task",
    "list_models",
    "list_tasks",
    "model_entry",
    "model_name",
    "register_model",
    "register_task",
]
