"""The one timing loop of the speed benchmarks (every runner in each round, in a new random order, medians), the
paired ratio of two runners with its interval, and the runners it times: an inference call, an SGD training step."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn


def interleaved_times(
    runners: Mapping[str, Callable[[], object]], rounds: int, warmup: int, repeat: int = 1, seed: int = 0
) -> dict[str, list[float]]:
    """Seconds of each counted call of each runner, in round order (so that two runners' i-th times were taken in
    the same round).

    Each round calls every runner in a new order drawn from a seeded generator, so that none always follows the same
    one and all share the machine's state (caches, clocks, a neighbour's load) alike; the first `warmup` rounds are
    not counted. With `repeat` > 1 a runner's turn is `repeat` calls in a row, of which the first is not counted: a
    runtime's worker threads keep spinning for a while after its call and slow whatever runs next. A runner that
    needs new data per call (a training step) draws it itself: every runner is called equally often."""
    times: dict[str, list[float]] = {key: [] for key in runners}
    order = list(runners)
    shuffle = random.Random(seed).shuffle
    for round_index in range(warmup + rounds):
        shuffle(order)
        for key in order:
            for call in range(repeat):
                start = time.perf_counter()
                runners[key]()
                elapsed = time.perf_counter() - start
                if round_index >= warmup and (call > 0 or repeat == 1):
                    times[key].append(elapsed)
    return times


def interleaved_medians(
    runners: Mapping[str, Callable[[], object]], rounds: int, warmup: int, repeat: int = 1, seed: int = 0
) -> dict[str, float]:
    """Median seconds per call of each runner, timed by `interleaved_times`."""
    times = interleaved_times(runners, rounds, warmup, repeat, seed)
    return {key: statistics.median(values) for key, values in times.items()}


def paired_ratio(
    numerator: Sequence[float], denominator: Sequence[float], level: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """(median, low, high): the median of the per-round ratios numerator[i] / denominator[i] of two runners timed in
    the same rounds, and the `level` bootstrap interval of that median. A ratio whose interval holds 1.0 is one this
    machine's run-to-run spread cannot tell from parity."""
    ratios = [a / b for a, b in zip(numerator, denominator, strict=True)]
    draw = random.Random(seed).choices
    medians = sorted(statistics.median(draw(ratios, k=len(ratios))) for _ in range(resamples))
    tail = (1 - level) / 2
    return statistics.median(ratios), medians[int(tail * resamples)], medians[int((1 - tail) * resamples) - 1]


def ratio_to_faster(
    times: Mapping[str, Sequence[float]], key: str, candidates: Iterable[str]
) -> tuple[float, float, float]:
    """`paired_ratio` of runner `key` against whichever of `candidates` has the lower median time."""
    faster = min(candidates, key=lambda candidate: statistics.median(times[candidate]))
    return paired_ratio(times[key], times[faster])


def range_text(low: float, high: float) -> str:
    """A `paired_ratio` interval as the tables print it."""
    return f"{low:.3f}-{high:.3f}"


def inference_runner(model: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    """A call of `model` on `x` without autograd: what the speed benchmarks time for inference."""

    def run() -> object:
        with torch.inference_mode():
            return model(x)

    return run


def training_runner(
    model: nn.Module, loss: Callable[[nn.Module, Any], torch.Tensor], batches: Iterable
) -> Callable[[], None]:
    """One SGD step of `model` (lr 0.01, momentum 0.9) per call, on the next of `batches`, minimising
    `loss(model, batch)`."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    remaining = iter(batches)

    def step() -> None:
        value = loss(model, next(remaining))
        optimizer.zero_grad()
        value.backward()
        optimizer.step()

    return step
