"""Eager CPU inference of our classifiers beside torchvision's and timm's same architectures.

All models run in one process, each round in a new random order (`benchmarks.timing`), so that the printed ratio
ours/peer is what counts, not the machine's absolute speed. Ours is built from the last peer's weights (timm's),
saved to disk and read as a user reads published weights, so both compute the same numbers. Ours runs as predict and
export run it: `fuse(model)`, batch norm folded into the convolutions, channels-last. Each peer runs twice: in its
best eager form (`benchmarks.best_form`: every batch norm a conv feeds folded, timm's `BatchNormAct2d` included,
channels-last weights and input), which the headline ratio compares with, and as its library builds it (NCHW,
nothing folded), whose ratio stands beside. Ours and the best forms are handed the same channels-last input: the
layout conversion of the input (2% of a V3-Large forward at batch 8) is no model's work.
Usage: python -m benchmarks.backbone_speed [--rounds N] [--batches 1 8] [--backbones v4_conv_small ...]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from backbones.fuse import fuse
from benchmarks.best_form import best_inference_form, channels_last
from benchmarks.peers import PEERS, ours_from_peer
from benchmarks.results import recorded
from benchmarks.timing import inference_runner, interleaved_times, range_text, ratio_to_faster


def benchmark(name: str, batch: int, size: int, rounds: int, warmup: int) -> dict[str, list[float]]:
    """Milliseconds of each forward, round by round, of ours (key `ours`), each peer as built (`<peer>`) and in its
    best form (`<peer>_best`)."""
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    peers = {peer: make().eval() for peer, make in PEERS[name].items()}
    with tempfile.TemporaryDirectory() as folder:
        ours, _ = ours_from_peer(name, list(peers.values())[-1], Path(folder), x)
    runners = {"ours": inference_runner(fuse(ours), channels_last(x))}
    for peer, model in peers.items():
        runners[peer] = inference_runner(model, x)
        runners[f"{peer}_best"] = inference_runner(best_inference_form(model, x), channels_last(x))
    times = interleaved_times(runners, rounds, warmup)
    return {key: [1000 * seconds for seconds in values] for key, values in times.items()}


def cell(ms: dict[str, float], key: str) -> str:
    return f"{ms[key]:>11.2f}" if key in ms else f"{'-':>11}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--backbones", nargs="+", default=list(PEERS), choices=list(PEERS))
    args = parser.parse_args(argv)
    with recorded(__file__, argv):
        print(
            f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.size}x{args.size}, eval, median ms "
            f"of {args.rounds} rounds"
        )
        header = (
            f"{'backbone':<16} {'batch':>5} | {'ours':>7} | best form: {'torchvision':>11} {'timm':>11} {'ratio':>6} "
            f"{'95% range':>11} | "
            f"as built: {'torchvision':>11} {'timm':>11} {'ratio':>6}"
        )
        print(header)
        print("-" * len(header))
        for name in args.backbones:
            for batch in args.batches:
                times = benchmark(name, batch, args.size, args.rounds, args.warmup)
                ms = {key: statistics.median(values) for key, values in times.items()}
                best, low, high = ratio_to_faster(times, "ours", [f"{peer}_best" for peer in PEERS[name]])
                built = ratio_to_faster(times, "ours", PEERS[name])[0]
                print(
                    f"{name:<16} {batch:>5} | {ms['ours']:>7.2f} | {'':>10} {cell(ms, 'torchvision_best')} "
                    f"{cell(ms, 'timm_best')} {best:>6.3f} {range_text(low, high):>11} | {'':>9} "
                    f"{cell(ms, 'torchvision')} {cell(ms, 'timm')} {built:>6.3f}"
                )
        print(
            "ours: fused, channels-last; best form: the peer with every conv-fed batch norm folded, channels-last; "
            "as built: the peer as its library builds it. ratio: the median over rounds of ours / the faster peer in "
            "that form, timed in the same round; 95% range: the bootstrap interval of that median (one that holds 1.0: "
            "this run cannot tell the two apart). Goal: ratio against the best form <= 1.0."
        )


if __name__ == "__main__":
    main()
