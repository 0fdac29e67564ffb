"""Weights: reading local checkpoint files and loading them, strictly, into backbones, classifiers and task models.

Files of this package:

- `reader.py`: the one checkpoint reader (`read_state_dict`: `torch.load(weights_only=True)`, named errors for
  missing or unreadable files, unwrapping training and Lightning checkpoints to the network's state dict) and
  the one strict loader (`load_strict`: every missing, unexpected and mis-shaped key named in the error).
- `keymaps.py`: source formats detected from keys; torchvision's and timm's backbone key maps (one map serves
  every width and variant), the parity settings each source needs (`SOURCE_OPTIONS`), and the task key maps
  for torchvision's SSDLite and DeepLabV3/LR-ASPP checkpoints.
- `loaders.py`: the loaders built from those two: `read_checkpoint` / `load_checkpoint` (backbone or
  classifier), `load_task_weights` and its `load_detector_weights` / `load_segmenter_weights`.
- `registry.py`: named weights, one `WeightsEntry` per published checkpoint (URL, hash, preprocessing,
  categories, published metrics); `register_weights`, `list_weights`, `get_weights`, and `resolve_weights`, the
  one resolver every `weights=` argument goes through (a tag, a URL or a local path -> a local file).
- `download.py`: downloads into torch's hub cache with the hash checked; `categories.py`: the entries' category lists.
  `python -m backbones.weights` prints the registry.
"""

from backbones.weights.keymaps import FORMATS, SOURCE_OPTIONS, TaskKeymap, detect_format
from backbones.weights.loaders import (
    Checkpoint,
    adapt_input_channels,
    load_checkpoint,
    load_detector_weights,
    load_segmenter_weights,
    load_task_weights,
    read_checkpoint,
)
from backbones.weights.reader import LIGHTNING_PREFIX, load_file, load_strict, model_state, read_state_dict
from backbones.weights.registry import (
    WeightsEntry,
    find_weights,
    get_weights,
    list_weights,
    register_weights,
    resolve_weights,
    weights_tags,
)

__all__ = [
    "FORMATS",
    "LIGHTNING_PREFIX",
    "SOURCE_OPTIONS",
    "Checkpoint",
    "TaskKeymap",
    "WeightsEntry",
    "adapt_input_channels",
    "detect_format",
    "find_weights",
    "get_weights",
    "list_weights",
    "load_checkpoint",
    "load_detector_weights",
    "load_file",
    "load_segmenter_weights",
    "load_strict",
    "load_task_weights",
    "model_state",
    "read_checkpoint",
    "read_state_dict",
    "register_weights",
    "resolve_weights",
    "weights_tags",
]
