"""Eager CPU inference of our classifiers beside torchvision's and timm's same architectures.

All models run in one process, interleaved round by round in a rotating order, so that the printed ratio
ours/peer is what counts, not the machine's absolute speed. Ours is built from the last peer's weights (timm's),
saved to disk and read as a user reads published weights, so both compute the same numbers. Peers run as their
libraries build them (contiguous NCHW) and converted to channels-last. Ours is channels-last by default and runs as
`fuse(model)` returns it, batch norm folded into the convolutions, as predict and export run it; the "same form"
column runs ours unfused, against the faster peer in channels-last: both eager modules in one layout, nothing
folded, which separates the layout and the folding from the network itself.
Usage: python -m benchmarks.backbone_speed [--rounds N] [--batches 1 8] [--backbones v4_conv_small ...]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from backbones.fuse import fuse
from benchmarks.peers import PEERS, ours_from_peer
from benchmarks.results import recorded


@torch.inference_mode()
def time_once(model: nn.Module, x: torch.Tensor) -> float:
    start = time.perf_counter()
    model(x)
    return time.perf_counter() - start


def benchmark(name: str, batch: int, size: int, rounds: int, warmup: int) -> dict[str, float]:
    """Median milliseconds per forward for ours (fused and unfused), each peer, and each peer in channels-last."""
    x = torch.randn(batch, 3, size, size)
    models = {}
    for peer, make in PEERS[name].items():
        models[peer] = make().eval()
        models[f"{peer}_cl"] = copy.deepcopy(models[peer]).to(memory_format=torch.channels_last)
    with tempfile.TemporaryDirectory() as folder:
        ours, _ = ours_from_peer(name, models[peer], Path(folder), x)
    models |= {"ours": fuse(ours), "ours_unfused": ours}
    inputs = {key: x.contiguous(memory_format=torch.channels_last) if key.endswith("_cl") else x for key in models}
    keys = list(models)
    times: dict[str, list[float]] = {key: [] for key in models}
    for round_index in range(warmup + rounds):
        shift = round_index % len(keys)
        for key in keys[shift:] + keys[:shift]:
            elapsed = time_once(models[key], inputs[key])
            if round_index >= warmup:
                times[key].append(elapsed)
    return {key: 1000 * statistics.median(values) for key, values in times.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--backbones", nargs="+", default=list(PEERS))
    args = parser.parse_args(argv)
    with recorded(__file__, argv):
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.size}x{args.size}, eval, median ms")
        header = (
            f"{'backbone':<16} {'batch':>5} | {'ours':>7} {'torchvision':>11} {'timm':>7} | {'ours/faster peer':>16} | "
            f"{'faster peer in channels-last':>28} {'ratio':>6} | {'ours unfused':>12} {'same form':>9}"
        )
        print(header)
        print("-" * len(header))
        for name in args.backbones:
            for batch in args.batches:
                ms = benchmark(name, batch, args.size, args.rounds, args.warmup)
                faster = min(value for key, value in ms.items() if key in PEERS[name])
                faster_cl = min(value for key, value in ms.items() if key.endswith("_cl"))
                tv = f"{ms['torchvision']:>11.2f}" if "torchvision" in ms else f"{'-':>11}"
                print(
                    f"{name:<16} {batch:>5} | {ms['ours']:>7.2f} {tv} {ms['timm']:>7.2f} | "
                    f"{ms['ours'] / faster:>16.3f} | "
                    f"{faster_cl:>28.2f} {ms['ours'] / faster_cl:>6.3f} | "
                    f"{ms['ours_unfused']:>12.2f} {ms['ours_unfused'] / faster_cl:>9.3f}"
                )
        print(
            "ratio: ours (fused, channels-last) / faster peer in channels-last; same form: ours unfused / faster peer "
            "in channels-last. Goal: <= 1.0."
        )


if __name__ == "__main__":
    main()
