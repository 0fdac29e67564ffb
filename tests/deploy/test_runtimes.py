"""The runtime registry, and every registered runtime's export -> load -> run round trip."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from deploy.runtimes import Runtime, get_runtime, list_runtimes


def test_registry_lists_onnx_and_torchscript():
    assert {"onnx", "torchscript"} <= set(list_runtimes())
    for name in list_runtimes():
        runtime = get_runtime(name)
        assert isinstance(runtime, Runtime) and runtime.name == name and runtime.suffix.startswith(".")


def test_unknown_runtime_lists_the_valid_ones():
    valid = re.escape(str(list_runtimes()))
    with pytest.raises(ValueError, match=rf"runtime 'tflite' is not supported; valid: {valid}"):
        get_runtime("tflite")


def test_unknown_option_lists_the_runtime_options():
    with pytest.raises(ValueError, match=r"runtime 'onnx' has no option\(s\) \['quality'\]; its options: \['opset'\]"):
        get_runtime("onnx").prepare(quality=1)
    with pytest.raises(ValueError, match=r"runtime 'torchscript' has no option\(s\) \['opset'\]; its options: none"):
        get_runtime("torchscript").prepare(opset=17)


def runtime_marks(name: str) -> list[pytest.MarkDecorator]:
    """OpenVINO runs in a process of its own (see tests/conftest.py); it and ExecuTorch (XNNPACK lowering, 5-10 s
    even for the small model) are the slow tier. ExecuTorch leaves no threads behind, so it shares the process."""
    if name == "openvino":
        return [pytest.mark.slow, pytest.mark.own_process]
    return [pytest.mark.slow] if name == "executorch" else []


@pytest.mark.parametrize("name", [pytest.param(name, marks=runtime_marks(name)) for name in list_runtimes()])
@pytest.mark.usefixtures("runtime_packages_installed")  # skipped where the runtime's packages are absent, only
def test_round_trip_equals_the_model_at_three_batch_sizes(name, small_v3, tmp_path):
    runtime = get_runtime(name)
    options = runtime.prepare()  # an installed runtime that cannot be imported fails here
    model = small_v3  # tests/deploy/conftest.py
    example = torch.randn(2, 3, 64, 64)
    path = tmp_path / f"model{runtime.suffix}"
    runtime.export(model, example, path, ("logits",), True, **options)
    loaded = runtime.load(path)
    for x in (example, torch.randn(3, 3, 64, 64), torch.randn(20, 3, 64, 64)):
        with torch.inference_mode():
            want = model(x)
        for images in (x, x.numpy()):  # tensors and arrays alike
            (got,) = loaded.run(images)
            assert isinstance(got, torch.Tensor) and got.shape == want.shape
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-4 * float(want.abs().max()))
