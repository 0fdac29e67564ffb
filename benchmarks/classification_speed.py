"""Training throughput of our classifiers beside timm's same architectures, on the same batches, in one process.

For each backbone, ours (`create_classifier`) and timm's model train step by step interleaved (alternating
which goes first) on identical random 224x224 batches with SGD, so that the printed ratio is what counts.
Both run in their libraries' default layout (ours channels-last). Denormal floats are flushed to zero for both,
so that the ratio measures the models rather than how many denormals each random start happens to produce.
Usage: python -m benchmarks.classification_speed [--steps 12] [--batch 32] [--backbones v1 v2 v3_large v3_small]
"""

from __future__ import annotations

import argparse
import statistics
import time

import timm
import torch
import torch.nn.functional as F

from backbones import create_classifier
from benchmarks.peers import TIMM_NAMES
from benchmarks.results import recorded

SIZE = 224
NUM_CLASSES = 1000


def training_rates(name: str, steps: int, warmup: int, batch: int) -> dict[str, float]:
    """Images per second (median step) of ours and timm's `name`."""
    torch.manual_seed(0)
    models = {"ours": create_classifier(name, NUM_CLASSES), "timm": timm.create_model(TIMM_NAMES[name])}
    optimizers = {k: torch.optim.SGD(m.train().parameters(), lr=0.01, momentum=0.9) for k, m in models.items()}
    generator = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(batch, 3, SIZE, SIZE, generator=generator), torch.randint(0, NUM_CLASSES, (batch,)))
        for _ in range(warmup + steps)
    ]
    times: dict[str, list[float]] = {k: [] for k in models}
    for index, (images, labels) in enumerate(batches):
        for key in list(models) if index % 2 == 0 else list(reversed(models)):
            start = time.perf_counter()
            loss = F.cross_entropy(models[key](images), labels)
            optimizers[key].zero_grad()
            loss.backward()
            optimizers[key].step()
            if index >= warmup:
                times[key].append(time.perf_counter() - start)
    return {key: batch / statistics.median(values) for key, values in times.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backbones", nargs="+", default=list(TIMM_NAMES), choices=list(TIMM_NAMES))
    parser.add_argument("--steps", type=int, default=12, help="timed training steps per model")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args(argv)
    torch.set_flush_denormal(True)
    with recorded(__file__, argv):
        print(
            f"training at {SIZE}x{SIZE}, batch {args.batch}, {NUM_CLASSES} classes, SGD, {torch.get_num_threads()} "
            f"threads, median of {args.steps} steps"
        )
        print(f"{'backbone':<10} {'ours img/s':>11} {'timm img/s':>11} {'ours/timm':>10}")
        for name in args.backbones:
            rate = training_rates(name, args.steps, args.warmup, args.batch)
            print(f"{name:<10} {rate['ours']:>11.1f} {rate['timm']:>11.1f} {rate['ours'] / rate['timm']:>10.3f}")
        print("goal: ours/timm >= 1.0")


if __name__ == "__main__":
    main()
