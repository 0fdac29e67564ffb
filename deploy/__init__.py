"""Deployment runtimes (`deploy.runtimes`: onnx, torchscript, openvino, executorch, litert): a network, example
inputs and a path in, a checked runnable file out, and int8 through each runtime's `quantize`. This package knows
nothing of tasks: `python -m tasks.<task> export` (tasks/common/export.py, int8.py) calls it."""
