"""ExecuTorch: the program is exported in plain NCHW (so XNNPACK takes the network whole), the int8 `.pte` runs in
executorch.runtime and tracks the float model, and the float scopes stay float.

The fp32 round trip is `tests/deploy/test_runtimes.py`'s, with every other runtime.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

from backbones import create_classifier
from backbones.attention import MobileAttention
from backbones.fuse import fuse
from deploy.runtimes import get_runtime
from deploy.runtimes.executorch import exported_program, quantized_program
from tests.helpers import SIZE, randomize_norms

needs_executorch = pytest.mark.skipif(
    importlib.util.find_spec("executorch") is None,
    reason="executorch is not installed: pip install -e '.[executorch]'",
)

# int8 against the float model, as a fraction of the float logits' largest magnitude. One int8 step is 1/255 of a
# tensor's calibrated range (per-tensor activations), and about twenty quantized tensors follow each other here
# (convolutions, hard-swish, the squeeze-excitation gates, residual adds, the head's linear layers), so the steps add
# up: measured 0.012 on fresh images (top-1 agreement 1.0 on 32). 0.05 leaves room for other seeds and calibration
# sets, and still fails a broken program (wrong scales, a skipped requantization), whose errors are of the logits'
# own size. The lower bound shows that int8 kernels ran: the fp32 program is within 1e-6 of it.
INT8_TOLERANCE = 0.05
INT8_MIN_DIFF = 1e-4
MIN_TOP1_AGREEMENT = 0.95


def test_export_is_nchw_and_equals_the_model():
    model = fuse(randomize_norms(create_classifier("v3_small", 10, width=0.5)))
    program = exported_program(model, torch.randn(1, 3, SIZE, SIZE), dynamic_batch=True)  # batch 1, yet dynamic
    assert not any(node.kwargs.get("memory_format") == torch.channels_last for node in program.graph.nodes)
    maps = [node.meta["val"] for node in program.graph.nodes if getattr(node.meta.get("val"), "ndim", 0) == 4]
    assert len(maps) > 100
    for value in maps:  # NCHW strides; a channels-last map has stride 1 on its channels
        _, _, height, width = value.shape
        assert tuple(int(s) for s in value.stride()[1:]) == (height * width, width, 1)
    images = torch.randn(3, 3, SIZE, SIZE)
    with torch.inference_mode():
        torch.testing.assert_close(program.module()(images), model(images), rtol=1e-5, atol=1e-6)


@needs_executorch
@pytest.mark.slow  # pt2e calibration and conversion: 6 s; the fast tier checks float scopes in ONNX (test_end_to_end)
def test_float_scopes_stay_float(small_v3):
    program = quantized_program(small_v3, [torch.randn(4, 3, SIZE, SIZE).numpy()], ["/head/"])

    def quantizes(node: torch.fx.Node) -> bool:
        return node.op == "call_function" and "quantize_per" in str(node.target)

    def under_head(node: torch.fx.Node) -> bool:
        return any(path == "head" for path, _ in (node.meta.get("nn_module_stack") or {}).values())

    head = [node for node in program.graph.nodes if under_head(node)]
    assert head and not any(quantizes(node) for node in head)
    assert sum(quantizes(node) for node in program.graph.nodes if not under_head(node)) > 20


@needs_executorch
@pytest.mark.slow  # XNNPACK lowering of the int8 graph: about 10 s on 2 busy cores
def test_int8_program_runs_and_tracks_the_float_model(small_v3, tmp_path):
    """What `export --format executorch --int8` writes by default: batch 1 (a dynamic batch doubles the lowering
    time; the fp32 round trip covers it)."""
    from executorch.exir._serialize._program import deserialize_pte_binary

    model = small_v3
    generator = torch.Generator().manual_seed(1)
    batches = [torch.randn(4, 3, SIZE, SIZE, generator=generator).numpy() for _ in range(4)]
    runtime = get_runtime("executorch")
    path = runtime.quantize(model, None, tmp_path / "m.int8.pte", batches, dynamic_batch=False, batch_size=1)
    # the whole network is one XNNPACK delegate: outside it only casts of scalar constants, no `as_strided_copy`
    # cutting it at each squeeze-excitation
    plan = deserialize_pte_binary(path.read_bytes()).program.execution_plan[0]
    assert [delegate.id for delegate in plan.delegates] == ["XnnpackBackend"]
    assert "aten::as_strided_copy" not in {operator.name for operator in plan.operators}

    loaded = runtime.load(path)
    assert loaded.max_batch == 1
    images = torch.randn(32, 3, SIZE, SIZE, generator=generator)  # fresh images, run one at a time
    with torch.inference_mode():
        want = model(images)
    (got,) = loaded.run(images)
    scale = float(want.abs().max())
    diff = float((got - want).abs().max())
    assert got.shape == want.shape
    assert INT8_MIN_DIFF * scale < diff <= INT8_TOLERANCE * scale, f"max abs diff {diff:.3g}, logits up to {scale:.3g}"
    assert float((got.argmax(1) == want.argmax(1)).float().mean()) >= MIN_TOP1_AGREEMENT


@needs_executorch
@pytest.mark.slow  # XNNPACK lowering: a few seconds
def test_v4_hybrid_attention_lowers_and_equals_the_block(tmp_path):
    """Mobile MQA (strided keys and values, layer scale) on channels-last maps, as in V4-Hybrid, lowered to XNNPACK,
    equals the block: the V4 classifiers' runtime checks (tests/deploy/test_v4_exports.py) run ExecuTorch on
    V4-Conv-S's whole network only, the hybrid's taking 40 s."""
    block = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        MobileAttention(32, 32, heads=4, key_dim=8, kv_stride=2, layer_scale=0.5),
    )
    block = randomize_norms(block).eval().to(memory_format=torch.channels_last)
    path = tmp_path / "attention.pte"
    runtime = get_runtime("executorch")
    runtime.export(block, torch.randn(2, 3, 16, 16), path, ("out",), True, **runtime.prepare())
    images = torch.randn(3, 3, 16, 16)  # NCHW pixels, as a network takes them; its weights make the maps channels-last
    (got,) = runtime.load(path).run(images)
    with torch.inference_mode():
        want = block(images)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
