"""Deployment: batch norm folding, ONNX / TorchScript export with a check right after, int8 quantization.

Kept import-light: `tasks.<task>.main` imports `deploy.cli` to dispatch `export`, and `deploy.export` imports the
tasks, so nothing here imports `deploy.export` at module level.
"""
