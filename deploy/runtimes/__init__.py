"""Deployment runtimes by name: `get_runtime("onnx")`; every module of this package registers one.

Adding a runtime (OpenVINO, ExecuTorch, LiteRT, ...) is one new file here with a `Runtime` subclass decorated
with `@register_runtime`: it is imported below, offered by `export --format` and checked by the exporter.
"""

from __future__ import annotations

import importlib
import pkgutil

from deploy.runtimes.base import INPUT_NAME, Loaded, Runtime, get_runtime, list_runtimes, register_runtime

# every runtime module registers itself on import
for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["INPUT_NAME", "Loaded", "Runtime", "get_runtime", "list_runtimes", "register_runtime"]
