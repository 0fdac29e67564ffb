"""Training throughput and peak memory of our SSDLite against torchvision's, and the data pipeline's rate.

Both detectors train on the same batches in one process, step by step interleaved, so that the ratio is
what counts. Peak memory (RSS growth over the model's training steps) is measured in a forked child per
model, as one process cannot separate two models' peaks (spawned, not forked: a fork after OpenMP has started
its threads hangs). The data part iterates the default training
data loader (synthetic data, 2 workers) alone and compares batches/s with our model's steps/s.
Usage: python -m benchmarks.detection_speed [--steps 20] [--batch 16]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time

import torch
import torchvision

from benchmarks.results import recorded
from tasks.detect.data.module import DetectionDataModule
from tasks.detect.model import build_detector

SIZE = 320


def make_models() -> dict[str, torch.nn.Module]:
    return {
        "ours": build_detector("v3_large", 91, reduced_tail=True).train(),
        "torchvision": torchvision.models.detection.ssdlite320_mobilenet_v3_large(
            weights=None, weights_backbone=None, num_classes=91
        ).train(),
    }


def make_batches(datamodule: DetectionDataModule, count: int) -> list:
    loader = datamodule.train_dataloader()
    batches = []
    for batch in loader:
        batches.append(batch)
        if len(batches) == count:
            return batches
    raise RuntimeError(f"the training data has fewer than {count} batches")


def train_step(name: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch, mean, std) -> None:
    images, targets = batch
    if name == "torchvision":  # it normalises inside; give it the same pixels in [0, 1]
        images = list(images * std + mean)
    targets = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]
    losses = model(images, targets)
    optimizer.zero_grad()
    sum(losses.values()).backward()
    optimizer.step()


def _status_mb(field: str) -> float:
    """A memory field of /proc/self/status (VmHWM: this process image's peak RSS; it resets at exec)."""
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _peak_rss_child(name: str, batches, mean, std, queue) -> None:
    """Peak RSS over building the model and training it, above the process's RSS before the model."""
    torch.manual_seed(0)
    before = _status_mb("VmRSS")
    model = make_models()[name]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for batch in batches:
        train_step(name, model, optimizer, batch, mean, std)
    queue.put(_status_mb("VmHWM") - before)


def peak_memory_mb(name: str, batches, mean, std) -> float:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_peak_rss_child, args=(name, batches, mean, std, queue))
    child.start()
    value = queue.get()
    child.join()
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args(argv)
    datamodule = DetectionDataModule(image_size=SIZE, batch_size=args.batch, num_workers=2)
    datamodule.setup("fit")
    mean = torch.tensor(datamodule.mean).view(3, 1, 1)
    std = torch.tensor(datamodule.std).view(3, 1, 1)
    batches = make_batches(datamodule, args.warmup + args.steps)

    models = make_models()
    optimizers = {k: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for k, m in models.items()}
    times: dict[str, list[float]] = {k: [] for k in models}
    for index, batch in enumerate(batches):
        order = list(models) if index % 2 == 0 else list(reversed(models))
        for name in order:
            start = time.perf_counter()
            train_step(name, models[name], optimizers[name], batch, mean, std)
            if index >= args.warmup:
                times[name].append(time.perf_counter() - start)
    rate = {k: args.batch / statistics.median(v) for k, v in times.items()}
    memory = {k: peak_memory_mb(k, batches[: args.warmup + 3], mean, std) for k in models}

    loader_batches, start = 0, time.perf_counter()
    for _ in datamodule.train_dataloader():
        loader_batches += 1
        if loader_batches == args.steps:
            break
    data_rate = loader_batches * args.batch / (time.perf_counter() - start)

    with recorded(__file__, argv):
        print(
            f"SSDLite v3_large, 91 classes, {SIZE}x{SIZE}, batch {args.batch}, {torch.get_num_threads()} threads, "
            f"median of {args.steps} steps"
        )
        print(f"{'model':<12} {'images/s':>9} {'peak RSS MB':>12}")
        for name in models:
            print(f"{name:<12} {rate[name]:>9.2f} {memory[name]:>12.0f}")
        print(f"throughput ours/torchvision: {rate['ours'] / rate['torchvision']:.3f} (goal >= 1.0)")
        print(f"memory ours/torchvision: {memory['ours'] / memory['torchvision']:.3f} (goal <= 1.0)")
        print(
            f"data pipeline alone (2 workers): {data_rate:.1f} images/s = {data_rate / rate['ours']:.2f}x "
            "our training rate (goal >= 2)"
        )


if __name__ == "__main__":
    main()
