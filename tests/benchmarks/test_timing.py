"""The timing loop's counts and the paired ratio's median and interval."""

from __future__ import annotations

import random

import pytest

from benchmarks.timing import interleaved_times, paired_ratio


@pytest.mark.parametrize(("repeat", "per_round"), [(1, 1), (3, 2)])
def test_each_runner_gets_its_counted_calls_in_every_round(repeat: int, per_round: int) -> None:
    calls = {"a": 0, "b": 0}

    def runner(key: str):
        def call() -> None:
            calls[key] += 1

        return call

    times = interleaved_times({key: runner(key) for key in calls}, rounds=4, warmup=2, repeat=repeat)
    assert calls == {"a": 6 * repeat, "b": 6 * repeat}
    assert {key: len(values) for key, values in times.items()} == {"a": 4 * per_round, "b": 4 * per_round}


def test_a_drift_both_share_cancels_in_the_paired_ratio() -> None:
    # the machine's speed drifts 2x over the run; one runner is always 10% slower in the same round
    drift = [1 + index / 30 for index in range(30)]
    faster = [0.010 * speed for speed in drift]
    slower = [0.011 * speed for speed in drift]
    median, low, high = paired_ratio(slower, faster)
    assert median == pytest.approx(1.1, rel=1e-9)
    assert (low, high) == pytest.approx((1.1, 1.1), rel=1e-9)


def test_the_interval_holds_the_true_ratio_and_narrows_with_more_rounds() -> None:
    noise = random.Random(0)

    def rounds(count: int) -> tuple[list[float], list[float]]:
        peer = [0.010 * noise.lognormvariate(0, 0.05) for _ in range(count)]
        ours = [0.0102 * noise.lognormvariate(0, 0.05) for _ in range(count)]
        return ours, peer

    few = paired_ratio(*rounds(20))
    many = paired_ratio(*rounds(400))
    for median, low, high in (few, many):
        assert low <= median <= high
        assert low < 1.02 < high
    assert many[2] - many[1] < (few[2] - few[1]) / 2
    assert many[1] > 1.0  # 400 rounds tell a 2% difference at 5% noise from parity
