"""Deployed CPU inference: our classifiers in eager PyTorch, onnxruntime, OpenVINO and ExecuTorch beside the peers'.

Ours is built from the exported peer's weights (torchvision's, timm's for v1), saved to disk and read as a user
reads published weights, so both compute the same logits (the largest difference is printed) and a time
difference is the graph's, not the random initialisation's. Per backbone and per batch size (`--batch-sizes`,
default 1 and 8) at 224 x 224 on `--threads` threads (torch.set_num_threads, onnxruntime intra_op_num_threads):
our eager model as predict runs it (`fuse`d, channels-last; eval, inference_mode), each peer's eager model
(torchvision's and timm's) in its best form (`benchmarks.best_form`: every conv-fed batch norm folded, timm's
included, channels-last; the faster peer counts) and as its library builds it, our folded ONNX export in
onnxruntime, the peer exported the same way (its best form: `deploy.runtimes.onnx`, TorchScript-based exporter,
opset 17, all graph optimisations, a fixed batch), and our int8 QDQ model (`deploy.runtimes.onnx.quantize_onnx`,
calibrated on random normal images: speed does not depend on the ranges' values). onnxruntime's worker threads do
not spin between runs: spinning, they take the cores from whatever runs next in the process. Everything runs in one
process, one runtime after another (the matmul with eager PyTorch); each runtime's models take turns in a random
order, `--repeat` calls each per turn; times are medians (see `benchmark`).

A second table puts the same pairs in OpenVINO (`deploy.runtimes.openvino`: the folded ONNX export converted to IR,
CPU plugin in f32, latency hint, `--threads` threads): ours and the peer's fp32, our NNCF int8 (calibrated on random
normal images as above), and, where executorch is installed (`--executorch`, on by default then; its XNNPACK
lowering takes up to a minute per model), ours and the peer's fp32 `.pte` and our int8 `.pte` (pt2e XNNPACK
quantizer, calibrated as above) in ExecuTorch's runtime. A third puts our int8 in its fastest runtime against our
fp32 in its fastest.

The physical limit: 2 x multiply-adds (`backbones.profile.count_madds`) divided by the fp32 matrix-multiply rate
that this script measures with torch.matmul on the same threads, interleaved with the models. `fraction` is
limit / measured: 1.0 would be a network running at the matmul rate. The int8 model is held to the same fp32
rate (its own arithmetic could run faster), so its fraction can exceed what fp32 can reach.
Usage: python -m benchmarks.deploy_speed [--rounds N] [--batch-sizes 1 8] [--backbones v1 v3_large] [--no-executorch]
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from backbones import create_classifier
from backbones.fuse import fuse
from backbones.profile import count_madds
from benchmarks.best_form import best_inference_form, channels_last
from benchmarks.peers import PEERS, ours_from_peer  # the first peer is also exported to ONNX
from benchmarks.results import recorded
from benchmarks.timing import inference_runner, interleaved_medians
from deploy.runtimes import INPUT_NAME
from deploy.runtimes.onnx import DEFAULT_OPSET, OnnxRuntime, ort_session, quantize_onnx
from deploy.runtimes.openvino import OpenVinoRuntime

MATMUL_SIZE = 1024
# best int8 / best fp32 (issues 15 and 22)
INT8_GOALS = {name: 1.0 if name == "v3_small" else 0.85 for name in PEERS}
# backbone, MAdds, median ms by runner, limit ms, matmul GFLOP/s, largest |ours - peer| logit difference
Row = tuple[str, int, dict[str, float], float, float, float]
CALIBRATION_BATCHES = 4
CALIBRATION_BATCH_SIZE = 8


def onnx_runner(folded: nn.Module, path: Path, example: torch.Tensor, threads: int) -> Callable[[], object]:
    """Export the folded model (the example's fixed batch), open in onnxruntime; a call runs the example."""
    OnnxRuntime().export(folded, example, path, ("logits",), dynamic_batch=False, opset=DEFAULT_OPSET)
    return session_runner(ort_session(path, threads, spinning=False), example)


def openvino_runner(path: Path, threads: int, example: torch.Tensor) -> Callable[[], object]:
    """The IR compiled with `threads` threads; a call runs the example through an infer request."""
    request = OpenVinoRuntime().load(path, threads).request
    images = example.numpy()
    return lambda: request.infer([images])


def executorch_runner(
    folded: nn.Module, path: Path, example: torch.Tensor, int8_batches: list | None = None
) -> Callable[[], object]:
    """Export the folded model to a `.pte` of the example's fixed batch (XNNPACK; int8 by the pt2e XNNPACK quantizer
    when `int8_batches`, the calibration batches, are given), load in executorch.runtime; a call runs the example."""
    from deploy.runtimes.executorch import ExecuTorchRuntime

    runtime = ExecuTorchRuntime()
    if int8_batches is None:
        runtime.export(folded, example, path, ("logits",), dynamic_batch=False)
    else:
        batch = len(example)
        runtime.quantize(folded, path, path, int8_batches, dynamic_batch=False, batch_size=batch)
    method = runtime.load(path).method
    return lambda: method.execute([example])


def session_runner(session, example: torch.Tensor) -> Callable[[], object]:
    feed = {INPUT_NAME: example.numpy()}
    return lambda: session.run(None, feed)


def matmul_runner() -> Callable[[], object]:
    a, b = torch.randn(MATMUL_SIZE, MATMUL_SIZE), torch.randn(MATMUL_SIZE, MATMUL_SIZE)
    return lambda: torch.matmul(a, b)


def build_runners(
    name: str, size: int, batch: int, threads: int, folder: Path, executorch: bool = False
) -> tuple[dict[str, Callable[[], object]], float]:
    """Every runner of one backbone at a fixed batch (eager: ours `ours`, each peer as built `<peer>` and in its best
    form `<peer>_best`), and ours' largest logit difference to the exported peer."""
    example = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    peers = {peer: make().eval() for peer, make in PEERS[name].items()}
    best = {peer: best_inference_form(model, example) for peer, model in peers.items()}
    exported_peer = next(iter(peers))
    ours, difference = ours_from_peer(name, peers[exported_peer], folder, example)
    folded = {"ours": fuse(ours), "peer": best[exported_peer]}
    runners = {"ours": inference_runner(folded["ours"], channels_last(example))}  # the best forms' input
    runners |= {peer: inference_runner(model, example) for peer, model in peers.items()}
    runners |= {f"{peer}_best": inference_runner(model, channels_last(example)) for peer, model in best.items()}
    runners["ours_ort"] = onnx_runner(folded["ours"], folder / f"{name}_ours.onnx", example, threads)
    runners["peer_ort"] = onnx_runner(folded["peer"], folder / f"{name}_{exported_peer}.onnx", example, threads)
    generator = torch.Generator().manual_seed(0)
    batches = [
        torch.randn(CALIBRATION_BATCH_SIZE, 3, size, size, generator=generator).numpy()
        for _ in range(CALIBRATION_BATCHES)
    ]
    int8_path = quantize_onnx(folder / f"{name}_ours.onnx", folder / f"{name}_ours.int8.onnx", batches)
    runners["ours_ort_int8"] = session_runner(ort_session(int8_path, threads, spinning=False), example)
    openvino = OpenVinoRuntime()
    for key, stem in (("ours", "ours"), ("peer", exported_peer)):
        path = folder / f"{name}_{stem}.openvino.xml"
        openvino.export(folded[key], example, path, ("logits",), dynamic_batch=False)
        runners[f"{key}_ov"] = openvino_runner(path, threads, example)
    int8_ir = openvino.quantize(ours, folder / f"{name}_ours.openvino.xml", folder / f"{name}.int8.xml", batches)
    runners["ours_ov_int8"] = openvino_runner(int8_ir, threads, example)
    if executorch:
        runners["ours_et"] = executorch_runner(folded["ours"], folder / f"{name}_ours.pte", example)
        runners["peer_et"] = executorch_runner(folded["peer"], folder / f"{name}_{exported_peer}.pte", example)
        runners["ours_et_int8"] = executorch_runner(folded["ours"], folder / f"{name}_ours.int8.pte", example, batches)
    runners["matmul"] = matmul_runner()
    return runners, difference


RUNTIMES = ("ort", "ov", "et")


def runtime_of(key: str) -> str:
    """ "ours_ov_int8" -> "ov"; eager models ("ours", "timm", "timm_best") and "matmul" -> "eager"."""
    parts = key.split("_")
    return parts[1] if len(parts) > 1 and parts[1] in RUNTIMES else "eager"


def benchmark(runners: dict[str, Callable[[], object]], rounds: int, warmup: int, repeat: int) -> dict[str, float]:
    """Median milliseconds per call. A runtime's threads keep spinning for a while after its call and slow whatever
    runs next, so the runtimes run one after another, each through `benchmarks.timing.interleaved_medians`: its
    runners take turns round by round in a new random order, `repeat` calls a turn of which the first is not
    counted."""
    seconds: dict[str, float] = {}
    for runtime in dict.fromkeys(map(runtime_of, runners)):
        group = {key: run for key, run in runners.items() if runtime_of(key) == runtime}
        seconds |= interleaved_medians(group, rounds, warmup, repeat)
    return {key: 1000 * seconds[key] for key in runners}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5, help="calls in a row per runner and round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
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

    with recorded(__file__, argv):
        print(
            f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, openvino {openvino.__version__}, "
            f"{args.threads} threads, {args.size}x{args.size}, median ms of {args.rounds} rounds of {args.repeat} "
            "calls; "
            "ours built from the exported peer's weights"
        )
        for batch in args.batch_sizes:
            rows = []
            with tempfile.TemporaryDirectory() as folder:
                for name in args.backbones:
                    madds = count_madds(create_classifier(name), args.size) * batch
                    runners, difference = build_runners(
                        name, args.size, batch, args.threads, Path(folder), args.executorch
                    )
                    ms = benchmark(runners, args.rounds, args.warmup, args.repeat)
                    rate = 2 * MATMUL_SIZE**3 / (ms["matmul"] / 1000) / 1e9  # GFLOP/s
                    limit = 2 * madds / (rate * 1e9) * 1000  # ms
                    rows.append((name, madds, ms, limit, rate, difference))
            print_onnx_table(batch, rows)
            print_runtime_table(batch, rows, args.executorch)
            print_best_table(batch, rows)


def print_onnx_table(batch: int, rows: list[Row]) -> None:
    """Eager PyTorch and onnxruntime (fp32, int8), ours against the peers."""
    header = (
        f"{'backbone':<9} | {'eager':>6} {'best':>6} {'':<13} {'ratio':>5} {'built':>6} {'ratio':>5} | "
        f"{'ort':>6} {'peer':>6} {'ratio':>5} | "
        f"{'int8':>6} {'/ort':>5} | {'GFLOP/s':>7} {'limit':>6} | fraction: {'eager':>5} {'ort':>5} {'int8':>5} | "
        f"{'|ours - peer|':>13}"
    )
    print(f"\nbatch {batch}")
    print(header)
    print("-" * len(header))
    for name, _, ms, limit, rate, difference in rows:
        best = min(PEERS[name], key=lambda key: ms[f"{key}_best"])
        built = min(ms[peer] for peer in PEERS[name])
        print(
            f"{name:<9} | {ms['ours']:>6.2f} {ms[f'{best}_best']:>6.2f} {'(' + best + ')':<13} "
            f"{ms['ours'] / ms[f'{best}_best']:>5.2f} {built:>6.2f} {ms['ours'] / built:>5.2f} | "
            f"{ms['ours_ort']:>6.2f} {ms['peer_ort']:>6.2f} "
            f"{ms['ours_ort'] / ms['peer_ort']:>5.2f} | {ms['ours_ort_int8']:>6.2f} "
            f"{ms['ours_ort_int8'] / ms['ours_ort']:>5.2f} | {rate:>7.1f} {limit:>6.2f} | "
            f"{'':>9} {limit / ms['ours']:>5.2f} {limit / ms['ours_ort']:>5.2f} {limit / ms['ours_ort_int8']:>5.2f} | "
            f"{difference:>13.1e}"
        )
    print(
        "eager: ours fused and channels-last; best: the faster peer folded and channels-last (which), built: the "
        "faster peer as its library builds it; ratio: ours / that peer (eager) and ours / peer exported the same way "
        "(ort); /ort: int8 / our fp32 ort; |ours - peer|: largest logit difference in eager PyTorch. Goals: eager "
        "ratio against the best form <= 1.0, ort <= 1.0."
    )
    print("MAdds: " + ", ".join(f"{name} {madds / 1e6:.0f}M" for name, madds, *_ in rows))


def print_runtime_table(batch: int, rows: list[Row], executorch: bool) -> None:
    """OpenVINO (and ExecuTorch) medians of the same rounds, ours against the peer exported the same way."""
    header = (
        f"{'backbone':<9} | {'ov':>6} {'peer':>6} {'ratio':>5} {'/ort':>5} | {'int8':>6} {'/ov':>5} | "
        f"fraction: {'ov':>5} {'int8':>5}"
    )
    if executorch:
        header += f" | {'et':>6} {'peer':>6} {'ratio':>5} {'int8':>6} {'/et':>5} fraction: {'et':>5} {'int8':>5}"
    print(f"\nbatch {batch}")
    print(header)
    print("-" * len(header))
    for name, _, ms, limit, _, _ in rows:
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
        "in OpenVINO, /ov: int8 / fp32. Goals: ratio <= 1.0, /ort <= 0.7"
        + (
            "; et: ExecuTorch XNNPACK fp32, ratio ours / peer in ExecuTorch, int8: pt2e XNNPACK int8 in ExecuTorch, "
            "/et: int8 / fp32 (ExecuTorch's runtime picks its own thread count)."
            if executorch
            else "."
        )
    )


FP32_RUNNERS = {"ours_ort": "ort", "ours_ov": "ov", "ours_et": "et"}
INT8_RUNNERS = {"ours_ort_int8": "ort", "ours_ov_int8": "ov", "ours_et_int8": "et"}


def print_best_table(batch: int, rows: list[Row]) -> None:
    """Our int8 in its fastest runtime against our fp32 in its fastest runtime."""
    print(f"\nbatch {batch}: our best int8 over our best fp32")
    for name, _, ms, *_ in rows:
        fp32 = min((key for key in FP32_RUNNERS if key in ms), key=ms.__getitem__)
        int8 = min((key for key in INT8_RUNNERS if key in ms), key=ms.__getitem__)
        ratio = ms[int8] / ms[fp32]
        print(
            f"{name:<9} fp32 {ms[fp32]:>6.2f} ({FP32_RUNNERS[fp32]})  int8 {ms[int8]:>6.2f} ({INT8_RUNNERS[int8]})  "
            f"ratio {ratio:.2f}  goal <= {INT8_GOALS[name]:.2f}{'' if ratio <= INT8_GOALS[name] else '  MISSED'}"
        )


if __name__ == "__main__":
    main()
