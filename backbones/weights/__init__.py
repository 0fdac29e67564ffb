"""Weights: reading local checkpoint files and loading them, strictly, into backbones, classifiers and task models.

Files of this package:

- `reader.py`: the one checkpoint reader (`read_state_dict`: `torch.load(weights_only=True)`, named errors for
  missing or unreadable files, unwrapping training and Lightning checkpoints to the network's state dict) and
  the one strict loader (`load_strict`: every missing, unexpected and mis-shaped key named in the error).
- `keymaps.py`: source formats detected from keys; torchvision's and timm's backbone and classifier key maps (one
  map serves every width and variant), the parity settings each source needs (`SOURCE_OPTIONS`), and
  `TaskKeymap`, the shape of a task's whole-model map (each task keeps its own: `tasks/<task>/weights.py`).
- `loaders.py`: the loaders built from those two: `read_checkpoint` / `load_checkpoint` (backbone or
  classifier) and `load_task_weights` (a backbone + head model, through a task's key maps).
- `registry.py`: named weights, one `WeightsEntry` per published checkpoint (URL, hash, preprocessing,
  categories, published metrics); `register_weights`, `list_weights`, `get_weights`, `find_weights`.
- `download.py`: downloads into torch's hub cache with the hash checked; `resolve.py`: `resolve_weights`, the one
  resolver every `weights=` argument goes through (a tag, a URL or a local path -> a local file);
  `categories.py`: the entries' category lists. `python -m tasks.weights` prints the registry as a table.
"""

from backbones.weights.keymaps import FORMATS, SOURCE_OPTIONS, TaskKeymap, detect_format
from backbones.weights.loaders import (
    Checkpoint,
    WeightsVariantError,
    adapt_input_channels,
    check_build_options,
    load_checkpoint,
    load_task_weights,
    read_checkpoint,
)
from backbones.weights.reader import LIGHTNING_PREFIX, load_file, load_strict, model_state, read_state_dict
from backbones.weights.registry import (
    DEFAULT_TAG,
    WeightsEntry,
    find_weights,
    get_weights,
    list_weights,
    register_weights,
    weights_names,
    weights_tags,
)
from backbones.weights.resolve import resolve_weights

__all__ = [
    "DEFAULT_TAG",
    "FORMATS",
    "LIGHTNING_PREFIX",
    "SOURCE_OPTIONS",
    "Checkpoint",
    "TaskKeymap",
    "WeightsEntry",
    "WeightsVariantError",
    "adapt_input_channels",
    "check_build_options",
    "detect_format",
    "find_weights",
    "get_weights",
    "list_weights",
    "load_checkpoint",
    "load_file",
    "load_strict",
    "load_task_weights",
    "model_state",
    "read_checkpoint",
    "read_state_dict",
    "register_weights",
    "resolve_weights",
    "weights_names",
    "weights_tags",
]
