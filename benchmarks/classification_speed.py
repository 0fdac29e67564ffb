"""Training throughput of our classifiers beside timm's same architectures, on the same batches, in one process.

For each backbone, ours (`create_classifier`) and timm's model train on identical random 224x224 batches with SGD,
one step each per round in a new random order (`benchmarks.timing`), so that the printed ratio is what counts.
Ours trains as we ship it (channels-last). timm's trains in its best eager form for training, which the headline
ratio compares with (`benchmarks.best_form`: channels-last weights and batches; its norms learn, so nothing folds),
and as its library builds it (NCHW), whose ratio stands beside. Denormal floats are flushed to zero for all, so that
the ratio measures the models rather than how many denormals each random start happens to produce.
Usage: python -m benchmarks.classification_speed [--steps 12] [--batch 32] [--backbones v1 v2 v3_large v3_small]
"""

from __future__ import annotations

import argparse
import statistics

import timm
import torch
import torch.nn.functional as F
from torch import nn

from backbones import create_classifier
from benchmarks.best_form import best_training_form, channels_last
from benchmarks.peers import TIMM_NAMES
from benchmarks.results import recorded
from benchmarks.timing import interleaved_times, paired_ratio, range_text, training_runner

SIZE = 224
NUM_CLASSES = 1000


def training_times(name: str, steps: int, warmup: int, batch: int) -> dict[str, list[float]]:
    """Seconds of each training step, round by round, of ours (`ours`) and timm's `name` in its best form
    (`timm_best`) and as built (`timm`)."""
    torch.manual_seed(0)
    ours, timms = create_classifier(name, NUM_CLASSES), timm.create_model(TIMM_NAMES[name])
    models = {"ours": ours.train(), "timm_best": best_training_form(timms), "timm": timms.train()}
    generator = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(batch, 3, SIZE, SIZE, generator=generator), torch.randint(0, NUM_CLASSES, (batch,)))
        for _ in range(warmup + steps)
    ]
    best_batches = [(channels_last(x), y) for x, y in batches]  # ours' and the best form's
    inputs = {"ours": best_batches, "timm_best": best_batches, "timm": batches}
    runners = {key: training_runner(model, class_loss, inputs[key]) for key, model in models.items()}
    return interleaved_times(runners, steps, warmup)


def class_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    images, labels = batch
    return F.cross_entropy(model(images), labels)


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
            f"threads, median of {args.steps} steps, images/s"
        )
        print(
            f"{'backbone':<16} {'ours':>7} {'timm best':>10} {'ratio':>6} {'95% range':>11} | {'timm built':>10} "
            f"{'ratio':>6}"
        )
        for name in args.backbones:
            times = training_times(name, args.steps, args.warmup, args.batch)
            rate = {key: args.batch / statistics.median(values) for key, values in times.items()}
            ratio, low, high = paired_ratio(times["timm_best"], times["ours"])  # images/s: their step time over ours
            built = paired_ratio(times["timm"], times["ours"])[0]
            print(
                f"{name:<16} {rate['ours']:>7.1f} {rate['timm_best']:>10.1f} {ratio:>6.3f} "
                f"{range_text(low, high):>11} | {rate['timm']:>10.1f} {built:>6.3f}"
            )
        print(
            "ours: channels-last; timm best: timm's in channels-last; timm built: as timm builds it. ratio: ours / "
            "timm images/s in that form, the median over steps timed in the same round, with the bootstrap 95% range "
            "(one that holds 1.0: this run cannot tell the two apart). Goal: ratio against the best form >= 1.0"
        )


if __name__ == "__main__":
    main()
