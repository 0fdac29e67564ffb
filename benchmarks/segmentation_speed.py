"""Inference latency and training throughput of our DeepLabV3 and LR-ASPP (V3-Large) beside torchvision's.

Each pair runs in one process, interleaved step by step in alternating order, so that the printed ratio
ours/torchvision is what counts. Both models are built from scratch for 21 classes at output stride 16
(torchvision's `dilated=True`), without the auxiliary head, and see the same tensors and targets.
Latency: batch 1 at 520x520 (torchvision's evaluation size), eval mode, no autograd, ours `fuse`d as predict runs
it. Training: SGD steps on random crops of `--crop` pixels (the recipes' 480) with random labels.
Denormal floats are flushed to zero for both, as the tasks do: the from-scratch initialisation otherwise produces
denormals whose slow CPU path dominates training time, and the ratio should measure the models, not that start.
Usage: python -m benchmarks.segmentation_speed [--rounds 20] [--steps 8] [--batch 4] [--crop 480]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from backbones.fuse import fuse
from benchmarks.results import recorded
from tasks.segment.model import build_segmenter

NUM_CLASSES = 21
LATENCY_SIZE = 520
TORCHVISION = {
    "deeplabv3": torchvision.models.segmentation.deeplabv3_mobilenet_v3_large,
    "lraspp": torchvision.models.segmentation.lraspp_mobilenet_v3_large,
}


def make_pair(head: str) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {
        "ours": build_segmenter("v3_large", head, NUM_CLASSES),
        "torchvision": TORCHVISION[head](weights=None, weights_backbone=None, num_classes=NUM_CLASSES),
    }


def logits(output: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
    return output["out"] if isinstance(output, dict) else output


def interleaved_medians(models: dict[str, nn.Module], step, rounds: int, warmup: int) -> dict[str, float]:
    """Median seconds of `step(name, model, round)` per model, alternating which model goes first."""
    times: dict[str, list[float]] = {name: [] for name in models}
    for index in range(warmup + rounds):
        order = list(models) if index % 2 == 0 else list(reversed(models))
        for name in order:
            start = time.perf_counter()
            step(name, models[name], index)
            if index >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def latency(head: str, rounds: int, warmup: int) -> dict[str, float]:
    pair = make_pair(head)
    models = {"ours": fuse(pair["ours"]), "torchvision": pair["torchvision"].eval()}  # ours as predict runs it
    image = torch.randn(1, 3, LATENCY_SIZE, LATENCY_SIZE)

    def step(name: str, model: nn.Module, index: int) -> None:
        with torch.inference_mode():
            logits(model(image))

    return interleaved_medians(models, step, rounds, warmup)


def training_rate(head: str, steps: int, warmup: int, batch: int, crop: int) -> dict[str, float]:
    models = {name: model.train() for name, model in make_pair(head).items()}
    optimizers = {name: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for name, m in models.items()}
    generator = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(batch, 3, crop, crop, generator=generator), torch.randint(0, NUM_CLASSES, (batch, crop, crop)))
        for _ in range(warmup + steps)
    ]

    def step(name: str, model: nn.Module, index: int) -> None:
        images, masks = batches[index]
        loss = F.cross_entropy(logits(model(images)), masks, ignore_index=255)
        optimizers[name].zero_grad()
        loss.backward()
        optimizers[name].step()

    seconds = interleaved_medians(models, step, steps, warmup)
    return {name: batch / value for name, value in seconds.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--heads", nargs="+", default=["deeplabv3", "lraspp"], choices=sorted(TORCHVISION))
    parser.add_argument("--rounds", type=int, default=20, help="timed inference rounds per model")
    parser.add_argument("--steps", type=int, default=8, help="timed training steps per model")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--crop", type=int, default=480)
    args = parser.parse_args(argv)
    torch.set_flush_denormal(True)
    with recorded(__file__, argv):
        print(
            f"V3-Large, {NUM_CLASSES} classes, output stride 16, {torch.get_num_threads()} threads; latency: batch 1 "
            f"at {LATENCY_SIZE}x{LATENCY_SIZE}, median of {args.rounds}; training: batch {args.batch} at "
            f"{args.crop}x{args.crop}, median of {args.steps} steps"
        )
        print(
            f"{'head':<10} {'ours ms':>8} {'tv ms':>8} {'latency':>8} {'ours img/s':>11} {'tv img/s':>9} "
            f"{'training':>9}"
        )
        for head in args.heads:
            ms = {name: 1000 * value for name, value in latency(head, args.rounds, args.warmup).items()}
            rate = training_rate(head, args.steps, args.warmup, args.batch, args.crop)
            print(
                f"{head:<10} {ms['ours']:>8.1f} {ms['torchvision']:>8.1f} {ms['ours'] / ms['torchvision']:>8.3f} "
                f"{rate['ours']:>11.2f} {rate['torchvision']:>9.2f} {rate['ours'] / rate['torchvision']:>9.3f}"
            )
        print("latency = ours/torchvision time (goal <= 1.0); training = ours/torchvision images/s (goal >= 1.0)")


if __name__ == "__main__":
    main()
