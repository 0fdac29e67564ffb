"""Deployed CPU inference: our classifiers in eager PyTorch and onnxruntime (fp32, int8) beside the peers'.

Per backbone, at one image of 224 x 224 on `--threads` threads (torch.set_num_threads, onnxruntime
intra_op_num_threads): our eager model (eval, inference_mode), each peer's eager model (torchvision's and timm's;
the faster counts), our folded ONNX export in onnxruntime, the torchvision model (timm's for v1) exported the same
way (`deploy.runtimes.onnx`: batch norm folded, TorchScript-based exporter, opset 17, all graph optimisations), and our
int8 QDQ model (`deploy.quantize`, calibrated on random normal images: speed does not depend on the ranges'
values). onnxruntime's worker threads do not spin between runs: spinning, they take the cores from the torch runs
that follow (here they doubled them), at the price of onnxruntime itself running about 20% slower at batch 1.
Everything runs in one process, interleaved round by round in a rotating order; times are medians.

A second table puts the same pairs in OpenVINO (`deploy.runtimes.openvino`: the folded ONNX export converted to IR,
CPU plugin in f32, latency hint, `--threads` threads): ours and the peer's fp32, our NNCF int8 (calibrated on random
normal images as above), and, where executorch is installed (`--executorch`, on by default then; its XNNPACK
lowering takes 1-3 minutes per model on 2 busy cores), ours and the peer's fp32 `.pte` and our int8 `.pte` (pt2e
XNNPACK quantizer, calibrated as above) in ExecuTorch's runtime.

The physical limit: 2 x multiply-adds (`backbones.profile.count_madds`) divided by the fp32 matrix-multiply rate
that this script measures with torch.matmul on the same threads, interleaved with the models. `fraction` is
limit / measured: 1.0 would be a network running at the matmul rate. The int8 model is held to the same fp32
rate (its own arithmetic could run faster), so its fraction can exceed what fp32 can reach.
Usage: python -m benchmarks.deploy_speed [--rounds N] [--backbones v1 v3_large] [--no-executorch]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from backbones import create_classifier
from backbones.fuse import fuse
from backbones.profile import count_madds
from benchmarks.peers import PEERS  # the first peer is also exported to ONNX
from deploy.quantize import quantize_onnx
from deploy.runtimes import INPUT_NAME
from deploy.runtimes.onnx import DEFAULT_OPSET, OnnxRuntime, ort_session
from deploy.runtimes.openvino import OpenVinoRuntime

MATMUL_SIZE = 1024
CALIBRATION_BATCHES = 4
CALIBRATION_BATCH_SIZE = 8


def onnx_runner(model: nn.Module, path: Path, size: int, threads: int) -> Callable[[], object]:
    """Fold, export (batch 1), open in onnxruntime; a call runs one image."""
    example = torch.randn(1, 3, size, size)
    OnnxRuntime().export(fuse(model), example, path, ("logits",), dynamic_batch=False, opset=DEFAULT_OPSET)
    return session_runner(ort_session(path, threads, spinning=False), example)


def openvino_runner(path: Path, threads: int, size: int) -> Callable[[], object]:
    """The IR compiled with `threads` threads; a call runs one image through an infer request."""
    request = OpenVinoRuntime().load(path, threads).request
    example = torch.randn(1, 3, size, size).numpy()
    return lambda: request.infer([example])


def executorch_runner(
    model: nn.Module, path: Path, size: int, int8_batches: list | None = None
) -> Callable[[], object]:
    """Fold, export to a batch-1 `.pte` (XNNPACK; int8 by the pt2e XNNPACK quantizer when `int8_batches`, the
    calibration batches, are given), load in executorch.runtime; a call runs one image."""
    from deploy.runtimes.executorch import ExecuTorchRuntime

    runtime = ExecuTorchRuntime()
    example = torch.randn(1, 3, size, size)
    if int8_batches is None:
        runtime.export(fuse(model).eval(), example, path, ("logits",), dynamic_batch=False)
    else:
        runtime.quantize(fuse(model).eval(), path, path, int8_batches, dynamic_batch=False, batch_size=1)
    method = runtime.load(path).method
    return lambda: method.execute([example])


def session_runner(session, example: torch.Tensor) -> Callable[[], object]:
    feed = {INPUT_NAME: example.numpy()}
    return lambda: session.run(None, feed)


def eager_runner(model: nn.Module, size: int) -> Callable[[], object]:
    x = torch.randn(1, 3, size, size)

    def run() -> object:
        with torch.inference_mode():
            return model(x)

    return run


def matmul_runner() -> Callable[[], object]:
    a, b = torch.randn(MATMUL_SIZE, MATMUL_SIZE), torch.randn(MATMUL_SIZE, MATMUL_SIZE)
    return lambda: torch.matmul(a, b)


def build_runners(
    name: str, size: int, threads: int, folder: Path, executorch: bool = False
) -> dict[str, Callable[[], object]]:
    ours = create_classifier(name).eval()
    peers = {peer: make().eval() for peer, make in PEERS[name].items()}
    exported_peer = next(iter(peers))
    runners = {"ours": eager_runner(ours, size)}
    runners |= {peer: eager_runner(model, size) for peer, model in peers.items()}
    runners["ours_ort"] = onnx_runner(ours, folder / f"{name}_ours.onnx", size, threads)
    runners["peer_ort"] = onnx_runner(peers[exported_peer], folder / f"{name}_{exported_peer}.onnx", size, threads)
    generator = torch.Generator().manual_seed(0)
    batches = [
        torch.randn(CALIBRATION_BATCH_SIZE, 3, size, size, generator=generator).numpy()
        for _ in range(CALIBRATION_BATCHES)
    ]
    int8_path = quantize_onnx(folder / f"{name}_ours.onnx", folder / f"{name}_ours.int8.onnx", batches)
    int8_session = ort_session(int8_path, threads, spinning=False)
    runners["ours_int8"] = session_runner(int8_session, torch.randn(1, 3, size, size))
    openvino = OpenVinoRuntime()
    for key, model, stem in (("ours", ours, "ours"), ("peer", peers[exported_peer], exported_peer)):
        path = folder / f"{name}_{stem}.openvino.xml"
        openvino.export(fuse(model), torch.randn(1, 3, size, size), path, ("logits",), dynamic_batch=False)
        runners[f"{key}_ov"] = openvino_runner(path, threads, size)
    int8_ir = openvino.quantize(ours, folder / f"{name}_ours.openvino.xml", folder / f"{name}.int8.xml", batches)
    runners["ours_ov_int8"] = openvino_runner(int8_ir, threads, size)
    if executorch:
        runners["ours_et"] = executorch_runner(ours, folder / f"{name}_ours.pte", size)
        runners["peer_et"] = executorch_runner(peers[exported_peer], folder / f"{name}_{exported_peer}.pte", size)
        runners["ours_et_int8"] = executorch_runner(ours, folder / f"{name}_ours.int8.pte", size, batches)
    runners["matmul"] = matmul_runner()
    return runners


def benchmark(runners: dict[str, Callable[[], object]], rounds: int, warmup: int) -> dict[str, float]:
    """Median milliseconds per call, all runners interleaved in a rotating order."""
    keys = list(runners)
    times: dict[str, list[float]] = {key: [] for key in keys}
    for round_index in range(warmup + rounds):
        shift = round_index % len(keys)
        for key in keys[shift:] + keys[:shift]:
            start = time.perf_counter()
            runners[key]()
            elapsed = time.perf_counter() - start
            if round_index >= warmup:
                times[key].append(elapsed)
    return {key: 1000 * statistics.median(values) for key, values in times.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backbones", nargs="+", default=list(PEERS), choices=list(PEERS))
    parser.add_argument(
        "--executorch",
        action=argparse.BooleanOptionalAction,
        default=importlib.util.find_spec("executorch") is not None,
        help="ExecuTorch columns (default: when executorch is installed)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    import onnxruntime
    import openvino

    print(
        f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, openvino {openvino.__version__}, "
        f"{args.threads} threads, {args.size}x{args.size}, batch 1, median ms of {args.rounds} interleaved rounds"
    )
    header = (
        f"{'backbone':<9} | {'eager':>6} {'peer':>6} {'':<13} {'ratio':>5} | {'ort':>6} {'peer':>6} {'ratio':>5} | "
        f"{'int8':>6} {'/ort':>5} | {'GFLOP/s':>7} {'limit':>6} | fraction: {'eager':>5} {'ort':>5} {'int8':>5}"
    )
    print(header)
    print("-" * len(header))
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.backbones:
            madds = count_madds(create_classifier(name), args.size)
            runners = build_runners(name, args.size, args.threads, Path(folder), args.executorch)
            ms = benchmark(runners, args.rounds, args.warmup)
            peer = min(PEERS[name], key=lambda key: ms[key])
            rate = 2 * MATMUL_SIZE**3 / (ms["matmul"] / 1000) / 1e9  # GFLOP/s
            limit = 2 * madds / (rate * 1e9) * 1000  # ms
            print(
                f"{name:<9} | {ms['ours']:>6.2f} {ms[peer]:>6.2f} {'(' + peer + ')':<13} "
                f"{ms['ours'] / ms[peer]:>5.2f} | {ms['ours_ort']:>6.2f} {ms['peer_ort']:>6.2f} "
                f"{ms['ours_ort'] / ms['peer_ort']:>5.2f} | {ms['ours_int8']:>6.2f} "
                f"{ms['ours_int8'] / ms['ours_ort']:>5.2f} | {rate:>7.1f} {limit:>6.2f} | "
                f"{'':>9} {limit / ms['ours']:>5.2f} {limit / ms['ours_ort']:>5.2f} {limit / ms['ours_int8']:>5.2f}"
            )
            rows.append((name, madds, ms, limit))
    print(
        "ratio: ours / faster peer (eager) and ours / peer exported the same way (ort); /ort: int8 / our fp32 ort. "
        "Goals: eager <= 1.0, ort <= 1.0, int8 <= 0.6."
    )
    print("MAdds: " + ", ".join(f"{name} {madds / 1e6:.0f}M" for name, madds, _, _ in rows))
    print_runtime_table(rows, args.executorch)


def print_runtime_table(rows: list[tuple[str, int, dict[str, float], float]], executorch: bool) -> None:
    """OpenVINO (and ExecuTorch) medians of the same rounds, ours against the peer exported the same way."""
    header = (
        f"{'backbone':<9} | {'ov':>6} {'peer':>6} {'ratio':>5} {'/ort':>5} | {'int8':>6} {'/ov':>5} | "
        f"fraction: {'ov':>5} {'int8':>5}"
    )
    if executorch:
        header += f" | {'et':>6} {'peer':>6} {'ratio':>5} {'int8':>6} {'/et':>5} fraction: {'et':>5} {'int8':>5}"
    print()
    print(header)
    print("-" * len(header))
    for name, _, ms, limit in rows:
        line = (
            f"{name:<9} | {ms['ours_ov']:>6.2f} {ms['peer_ov']:>6.2f} {ms['ours_ov'] / ms['peer_ov']:>5.2f} "
            f"{ms['ours_ov'] / ms['ours_ort']:>5.2f} | {ms['ours_ov_int8']:>6.2f} "
            f"{ms['ours_ov_int8'] / ms['ours_ov']:>5.2f} | {'':>9} {limit / ms['ours_ov']:>5.2f} "
            f"{limit / ms['ours_ov_int8']:>5.2f}"
        )
        if executorch:
            line += (
                f" | {ms['ours_et']:>6.2f} {ms['peer_et']:>6.2f} {ms['ours_et'] / ms['peer_et']:>5.2f} "
                f"{ms['ours_et_int8']:>6.2f} {ms['ours_et_int8'] / ms['ours_et']:>5.2f} {'':>9} "
                f"{limit / ms['ours_et']:>5.2f} {limit / ms['ours_et_int8']:>5.2f}"
            )
        print(line)
    print(
        "ov: OpenVINO fp32, ratio ours / peer in OpenVINO, /ort: ours OpenVINO / ours onnxruntime; int8: NNCF int8 "
        "in OpenVINO, /ov: int8 / fp32. Goals: ratio <= 1.0, /ort <= 0.7, /ov <= 0.85 (v3_small <= 1.0)"
        + (
            "; et: ExecuTorch XNNPACK fp32, ratio ours / peer in ExecuTorch, int8: pt2e XNNPACK int8 in ExecuTorch, "
            "/et: int8 / fp32 (ExecuTorch's runtime picks its own thread count)."
            if executorch
            else "."
        )
    )


if __name__ == "__main__":
    main()
