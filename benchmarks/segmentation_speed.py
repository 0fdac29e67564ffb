"""Inference latency and training throughput of our DeepLabV3 and LR-ASPP (V3-Large) beside torchvision's.

Per head, the models run in one process, each round in a new random order (`benchmarks.timing`), so that the
printed ratio ours/torchvision is what counts. torchvision's is built from scratch for 21 classes at output stride
16 (`dilated=True`), without the auxiliary head, and ours from its state dict saved to disk, as a user converts
torchvision's weights: both compute the same numbers on the same tensors and targets, so a time difference is the
graph's. torchvision's runs in its best eager form, which the headline ratio compares with (`benchmarks.best_form`:
for inference every conv-fed batch norm folded and channels-last, for training channels-last, as its norms learn),
and as its library builds it, whose ratio stands beside. Ours runs as we ship it: `fuse`d for inference, as predict
runs it, and channels-last throughout.
Latency: batch 1 at 520x520 (torchvision's evaluation size), eval mode, no autograd. Training: SGD steps on random
crops of `--crop` pixels (the recipes' 480) with random labels.
Denormal floats are flushed to zero for all, as the tasks do: the from-scratch initialisation otherwise produces
denormals whose slow CPU path dominates training time, and the ratio should measure the models, not that start.
Usage: python -m benchmarks.segmentation_speed [--rounds 20] [--steps 8] [--batch 4] [--crop 480]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from backbones.fuse import fuse
from benchmarks.best_form import best_inference_form, best_training_form, channels_last
from benchmarks.results import recorded
from benchmarks.timing import inference_runner, interleaved_times, paired_ratio, range_text, training_runner
from tasks.segment.model import build_segmenter

NUM_CLASSES = 21
LATENCY_SIZE = 520
TORCHVISION = {
    "deeplabv3": torchvision.models.segmentation.deeplabv3_mobilenet_v3_large,
    "lraspp": torchvision.models.segmentation.lraspp_mobilenet_v3_large,
}


def make_pair(head: str) -> tuple[nn.Module, nn.Module]:
    """Ours and torchvision's, with torchvision's weights."""
    torch.manual_seed(0)
    theirs = TORCHVISION[head](weights=None, weights_backbone=None, num_classes=NUM_CLASSES)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{head}.pth"
        torch.save(theirs.state_dict(), path)
        ours = build_segmenter("v3_large", head, NUM_CLASSES, weights=str(path))
    return ours, theirs


def logits(output: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
    return output["out"] if isinstance(output, dict) else output


def latency(head: str, rounds: int, warmup: int) -> dict[str, list[float]]:
    """Seconds of each batch-1 forward of each form, round by round."""
    ours, theirs = make_pair(head)
    image = torch.randn(1, 3, LATENCY_SIZE, LATENCY_SIZE)
    runners = {
        "ours": inference_runner(fuse(ours), channels_last(image)),  # the best form's input
        "torchvision_best": inference_runner(best_inference_form(theirs, image), channels_last(image)),
        "torchvision": inference_runner(theirs.eval(), image),
    }
    return interleaved_times(runners, rounds, warmup)


def training_times(head: str, steps: int, warmup: int, batch: int, crop: int) -> dict[str, list[float]]:
    """Seconds of each training step of each form, round by round, every one trained on the same batches."""
    ours, theirs = make_pair(head)
    models = {"ours": ours.train(), "torchvision_best": best_training_form(theirs), "torchvision": theirs.train()}
    generator = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(batch, 3, crop, crop, generator=generator), torch.randint(0, NUM_CLASSES, (batch, crop, crop)))
        for _ in range(warmup + steps)
    ]
    best_batches = [(channels_last(x), y) for x, y in batches]  # ours' and the best form's
    inputs = {"ours": best_batches, "torchvision_best": best_batches, "torchvision": batches}
    runners = {name: training_runner(model, pixel_loss, inputs[name]) for name, model in models.items()}
    return interleaved_times(runners, steps, warmup)


def pixel_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    images, masks = batch
    return F.cross_entropy(logits(model(images)), masks, ignore_index=255)


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
            f"{'head':<10} | latency ms: {'ours':>6} {'tv best':>7} {'tv built':>8} {'ratio':>6} {'95% range':>11} "
            f"{'built':>6} | training img/s: {'ours':>6} {'tv best':>7} {'tv built':>8} {'ratio':>6} {'95% range':>11} "
            f"{'built':>6}"
        )
        for head in args.heads:
            times = latency(head, args.rounds, args.warmup)
            ms = {name: 1000 * statistics.median(values) for name, values in times.items()}
            ratio, low, high = paired_ratio(times["ours"], times["torchvision_best"])
            built = paired_ratio(times["ours"], times["torchvision"])[0]
            steps = training_times(head, args.steps, args.warmup, args.batch, args.crop)
            rate = {name: args.batch / statistics.median(values) for name, values in steps.items()}
            # images/s ratios: the peer's step time over ours
            rate_ratio, rate_low, rate_high = paired_ratio(steps["torchvision_best"], steps["ours"])
            rate_built = paired_ratio(steps["torchvision"], steps["ours"])[0]
            print(
                f"{head:<10} | {'':>11} {ms['ours']:>6.1f} {ms['torchvision_best']:>7.1f} {ms['torchvision']:>8.1f} "
                f"{ratio:>6.3f} {range_text(low, high):>11} {built:>6.3f} | {'':>15} {rate['ours']:>6.2f} "
                f"{rate['torchvision_best']:>7.2f} {rate['torchvision']:>8.2f} {rate_ratio:>6.3f} "
                f"{range_text(rate_low, rate_high):>11} {rate_built:>6.3f}"
            )
        print(
            "tv best: torchvision's in its best eager form (inference: batch norm folded, channels-last; training: "
            "channels-last); tv built: as its library builds it. ratio: ours / tv best, built: ours / tv built, each "
            "the median over rounds timed together, with the bootstrap 95% range of the ratio (one that holds 1.0: "
            "this run cannot tell the two apart); latency: time (goal <= 1.0), training: images/s (goal >= 1.0)"
        )


if __name__ == "__main__":
    main()
