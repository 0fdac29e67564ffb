"""Training throughput and peak memory of our SSDLite against torchvision's, and the data pipeline's rate.

The detectors train on the same batches in one process, one step each per round in a new random order
(`benchmarks.timing`); the headline ratio is the median of the per-round ratios, with its 95% range. Ours trains as
we ship it (channels-last); torchvision's in its best eager form for training, which the headline ratio compares
with (`benchmarks.best_form`: channels-last weights and batches; its norms learn, so nothing folds), and as its
library builds it, whose ratio stands beside. Normalising and resizing stay outside the timed step for every model:
the data module does both, as in our training, and torchvision's own transform (`GeneralizedRCNNTransform`:
normalise, resize, pad into a batch) is replaced by `PreparedBatch`, which only wraps the same normalised 320x320
batch; each step times the network, the loss, the backward pass and the SGD step. Peak memory (RSS growth over
building the model and its training steps) is the median of `--memory_runs` child processes per model, as one
process cannot separate the models' peaks (spawned, not forked: a fork after OpenMP has started its threads hangs).
The data part iterates the default training data loader (synthetic data, 2 workers) alone and compares images/s
with our model's.
Usage: python -m benchmarks.detection_speed [--steps 20] [--batch 16] [--memory_runs 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time

import torch
import torchvision
from torch import nn
from torchvision.models.detection.image_list import ImageList

from benchmarks.best_form import best_training_form, channels_last
from benchmarks.results import recorded
from benchmarks.timing import interleaved_times, paired_ratio, range_text, training_runner
from tasks.detect.data.module import DetectionDataModule
from tasks.detect.model import build_detector

SIZE = 320
NUM_CLASSES = 91


class PreparedBatch(nn.Module):
    """Stands in for torchvision's `GeneralizedRCNNTransform` on a batch that comes normalised and resized, as ours
    does: it only wraps the batch as the `ImageList` that SSD's forward reads, and leaves the targets as they are."""

    def forward(self, images: torch.Tensor, targets: list[dict] | None = None) -> tuple[ImageList, list[dict] | None]:
        return ImageList(images, [tuple(images.shape[-2:])] * len(images)), targets


def torchvision_ssdlite() -> nn.Module:
    model = torchvision.models.detection.ssdlite320_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=NUM_CLASSES
    )
    model.transform = PreparedBatch()
    return model.train()


BUILDERS = {
    "ours": lambda: build_detector("v3_large", NUM_CLASSES, reduced_tail=True).train(),
    "torchvision_best": lambda: best_training_form(torchvision_ssdlite()),
    "torchvision": torchvision_ssdlite,
}


def build(name: str) -> nn.Module:
    torch.manual_seed(0)
    return BUILDERS[name]()


def inputs_of(name: str, batches: list) -> list:
    """The batches as `name` takes them: channels-last images for ours and the best form, NCHW as built."""
    return batches if name == "torchvision" else [(channels_last(images), targets) for images, targets in batches]


def make_batches(datamodule: DetectionDataModule, count: int) -> list:
    loader = datamodule.train_dataloader()
    batches = []
    for images, targets in loader:
        batches.append((images, [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]))
        if len(batches) == count:
            return batches
    raise RuntimeError(f"the training data has fewer than {count} batches")


def detection_loss(model: nn.Module, batch: tuple[torch.Tensor, list[dict]]) -> torch.Tensor:
    images, targets = batch
    return sum(model(images, targets).values())


def _status_mb(field: str) -> float:
    """A memory field of /proc/self/status (VmHWM: this process image's peak RSS; it resets at exec)."""
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _peak_rss_child(name: str, batches: list, queue) -> None:
    """Peak RSS over building the model and training it, above the process's RSS before the model."""
    before = _status_mb("VmRSS")
    step = training_runner(build(name), detection_loss, batches)
    for _ in batches:
        step()
    queue.put(_status_mb("VmHWM") - before)


def peak_memory_mb(name: str, batches: list, children: int) -> float:
    """The median over `children` fresh processes of `_peak_rss_child`: one process's peak moves by tens of MB with
    where the allocator happens to place its blocks."""
    context = multiprocessing.get_context("spawn")
    values = []
    for _ in range(children):
        queue = context.Queue()
        child = context.Process(target=_peak_rss_child, args=(name, batches, queue))
        child.start()
        values.append(queue.get())
        child.join()
    return statistics.median(values)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--memory_runs", type=int, default=3, help="processes per model whose peak RSS is measured")
    args = parser.parse_args(argv)
    datamodule = DetectionDataModule(image_size=SIZE, batch_size=args.batch, num_workers=2)
    datamodule.setup("fit")
    batches = make_batches(datamodule, args.warmup + args.steps)

    runners = {name: training_runner(build(name), detection_loss, inputs_of(name, batches)) for name in BUILDERS}
    times = interleaved_times(runners, args.steps, args.warmup)
    rate = {name: args.batch / statistics.median(values) for name, values in times.items()}
    # images/s ours / theirs: their step time over ours, per round
    throughput, low, high = paired_ratio(times["torchvision_best"], times["ours"])
    memory = {
        name: peak_memory_mb(name, inputs_of(name, batches[: args.warmup + 3]), args.memory_runs) for name in BUILDERS
    }

    loader_batches, start = 0, time.perf_counter()
    for _ in datamodule.train_dataloader():
        loader_batches += 1
        if loader_batches == args.steps:
            break
    data_rate = loader_batches * args.batch / (time.perf_counter() - start)

    with recorded(__file__, argv):
        print(
            f"SSDLite v3_large, {NUM_CLASSES} classes, {SIZE}x{SIZE}, batch {args.batch}, {torch.get_num_threads()} "
            f"threads, median of {args.steps} steps; normalising and resizing outside the step for every model"
        )
        print(f"{'model':<17} {'images/s':>9} {'peak RSS MB':>12}")
        for name in BUILDERS:
            print(f"{name:<17} {rate[name]:>9.2f} {memory[name]:>12.0f}")
        print(
            f"throughput ours/torchvision: {throughput:.3f} (95% range {range_text(low, high)}) against its best form "
            f"(goal >= 1.0), {rate['ours'] / rate['torchvision']:.3f} against it as built"
        )
        print(
            f"memory ours/torchvision: {memory['ours'] / memory['torchvision_best']:.3f} against its best form (goal "
            f"<= 1.0), {memory['ours'] / memory['torchvision']:.3f} against it as built; median of "
            f"{args.memory_runs} processes each"
        )
        print(
            f"data pipeline alone (2 workers): {data_rate:.1f} images/s = {data_rate / rate['ours']:.2f}x "
            "our training rate (goal >= 2)"
        )


if __name__ == "__main__":
    main()
