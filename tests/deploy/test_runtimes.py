"""The runtime registry, and every registered runtime's export -> load -> run round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backbones import create_classifier
from backbones.fuse import fuse
from deploy.runtimes import Runtime, get_runtime, list_runtimes
from tests.helpers import randomize_norms


def test_registry_lists_onnx_and_torchscript():
    assert {"onnx", "torchscript"} <= set(list_runtimes())
    for name in list_runtimes():
        runtime = get_runtime(name)
        assert isinstance(runtime, Runtime) and runtime.name == name and runtime.suffix.startswith(".")


def test_unknown_runtime_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"runtime 'openvino' is not supported; valid: \['onnx', 'torchscript'"):
        get_runtime("openvino")


def test_unknown_option_lists_the_runtime_options():
    with pytest.raises(ValueError, match=r"runtime 'onnx' has no option\(s\) \['quality'\]; its options: \['opset'\]"):
        get_runtime("onnx").prepare(quality=1)
    with pytest.raises(ValueError, match=r"runtime 'torchscript' has no option\(s\) \['opset'\]; its options: none"):
        get_runtime("torchscript").prepare(opset=17)


@pytest.mark.parametrize("name", list_runtimes())
def test_round_trip_equals_the_model_at_two_batch_sizes(name, tmp_path):
    runtime = get_runtime(name)
    model = fuse(randomize_norms(create_classifier("v3_small", 10, width=0.5)))
    example = torch.randn(2, 3, 64, 64)
    path = tmp_path / f"model{runtime.suffix}"
    runtime.export(model, example, path, ("logits",), True, **runtime.prepare())
    loaded = runtime.load(path)
    for x in (example, torch.randn(3, 3, 64, 64)):
        with torch.inference_mode():
            want = model(x)
        for images in (x, x.numpy()):  # tensors and arrays alike
            (got,) = loaded.run(images)
            assert isinstance(got, torch.Tensor) and got.shape == want.shape
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-4 * float(want.abs().max()))
