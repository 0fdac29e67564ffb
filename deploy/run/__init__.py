"""The runner of exported models that needs no torch: `load(path)(images)` gives what the tasks' Python predictors
give, and `python -m deploy.run MODEL INPUTS... --out DIR` writes what `python -m tasks.<task> predict` writes.

It reads the file's metadata (`deploy.metadata`: task, input size and resize, class names, post-processing), so a
file alone is enough. It imports numpy, OpenCV, Pillow and the file's runtime (onnxruntime, OpenVINO) only: never
torch, torchvision, or the packages that import them (`tasks`, `backbones`, `heads`, `deploy.runtimes`).
"""

from deploy.run.errors import InputError
from deploy.run.model import Model, load

__all__ = ["InputError", "Model", "load"]
