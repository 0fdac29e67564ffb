"""Deployment: export through one `Runtime` interface (`deploy.runtimes`: onnx, torchscript), int8 quantization.

Kept import-light: `tasks.<task>.main` imports `deploy.cli` to dispatch `export`, and `deploy.export` imports the
tasks (inside functions), so nothing here imports `deploy.export` at module level.
"""
