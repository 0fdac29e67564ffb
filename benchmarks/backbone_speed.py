"""Eager CPU inference of our classifiers beside torchvision's and timm's same architectures.

All models run in one process, interleaved round by round in a rotating order, so that the printed ratio
ours/peer is what counts, not the machine's absolute speed. Peers run as their libraries build them
(contiguous NCHW). Ours is channels-last by default and runs as `fuse(model)` returns it, batch norm folded into
the convolutions, as predict and export run it. For transparency the table also gives the faster peer converted to
channels-last, which shows how much of the lead is the memory layout and how much the folding.
Usage: python -m benchmarks.backbone_speed [--rounds N] [--batches 1 8]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from backbones import create_classifier
from backbones.fuse import fuse
from benchmarks.peers import PEERS
from benchmarks.results import recorded


@torch.inference_mode()
def time_once(model: nn.Module, x: torch.Tensor) -> float:
    start = time.perf_counter()
    model(x)
    return time.perf_counter() - start


def benchmark(name: str, batch: int, size: int, rounds: int, warmup: int) -> dict[str, float]:
    """Median milliseconds per forward for ours, each peer, and each peer in channels-last."""
    models = {"ours": fuse(create_classifier(name))}
    for peer, make in PEERS[name].items():
        models[peer] = make().eval()
        models[f"{peer}_cl"] = make().eval().to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, size, size)
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
            f"{'backbone':<9} {'batch':>5} | {'ours':>7} {'torchvision':>11} {'timm':>7} | {'ours/faster peer':>16} | "
            f"{'faster peer in channels-last':>28} {'ratio':>6}"
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
                    f"{name:<9} {batch:>5} | {ms['ours']:>7.2f} {tv} {ms['timm']:>7.2f} | "
                    f"{ms['ours'] / faster:>16.3f} | "
                    f"{faster_cl:>28.2f} {ms['ours'] / faster_cl:>6.3f}"
                )


if __name__ == "__main__":
    main()
