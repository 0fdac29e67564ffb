"""`torch.compile` on CPU: ours and the peers compiled against eager, training compiled against eager, and
bf16 autocast against fp32.

Inference (224 px, batch 1 and 8): our classifier as predict runs it (`fuse`, channels-last, built from timm's weights
as `benchmarks.backbone_speed` builds it) and torchvision's and timm's same model, each peer as its library builds it
and in its best eager form (`benchmarks.best_form`: folded, channels-last), each eager and compiled
(`tasks.common.compile.compiled`, inductor, as `--model.compile true` and `compile=True` run), each round in a new
random order (`benchmarks.timing`); ours and the best forms get the same channels-last input. The headline ratio is
ours compiled against the faster peer compiled from its best form; the compile time is the first compiled call, with
an inductor cache that starts empty (a temporary TORCHINDUCTOR_CACHE_DIR).
Training images/s, eager and compiled, of the detection task's SSDLite (91 classes, batch 16, 320 px) and the
classification task's classifier (1000 classes, batch 32, 224 px), SGD steps on one batch.
bf16: the same inference and training under `torch.autocast("cpu", torch.bfloat16)` (what `--trainer.precision
bf16-mixed` runs) against fp32, eager; a CPU without bf16 units (avx512_bf16, amx_bf16) may be slower in bf16.
Usage: python -m benchmarks.compile_speed [--rounds N] [--batches 1 8] [--backbones v3_large] [--training detect
classify] [--train-steps N]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from torch import nn

from backbones.fuse import fuse
from benchmarks.best_form import best_inference_form, channels_last
from benchmarks.peers import PEERS, ours_from_peer
from benchmarks.results import cpu_fields, recorded
from benchmarks.timing import interleaved_times, range_text, ratio_to_faster
from tasks.common.compile import compiled
from tasks.models import get_model, model_name

TRAINING = {"detect": (16, 320, 91), "classify": (32, 224, 1000)}  # batch, size, classes
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def precision(bf16: bool) -> contextlib.AbstractContextManager:
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


@torch.inference_mode()
def inference(
    name: str, batch: int, size: int, rounds: int, warmup: int
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Seconds of each forward, round by round, of ours, each peer as built (`<peer>`) and in its best form
    (`<peer>_best`), eager, compiled and eager in bf16; seconds of each first compiled call."""
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    peers = {peer: make().eval() for peer, make in PEERS[name].items()}
    with tempfile.TemporaryDirectory() as folder:
        ours, _ = ours_from_peer(name, list(peers.values())[-1], Path(folder), x)
    forms = {"ours": (fuse(ours), channels_last(x))}
    for peer, model in peers.items():
        forms[peer] = (model, x)
        forms[f"{peer}_best"] = (best_inference_form(model, x), channels_last(x))
    calls: dict[str, Callable[[], object]] = {}
    compile_seconds = {}
    for key, (model, inputs) in forms.items():
        calls[key] = partial(model, inputs)
        calls[f"{key}_bf16"] = partial(_bf16, model, inputs)
        program = compiled(model)
        compile_seconds[key] = timed(partial(program, inputs))
        calls[f"{key}_compiled"] = partial(program, inputs)
    return interleaved_times(calls, rounds, warmup), compile_seconds


def _bf16(model: nn.Module, x: torch.Tensor) -> object:
    with precision(True):
        return model(x)


def training_batch(task: str, batch: int, size: int, classes: int) -> tuple:
    images = torch.randn(batch, 3, size, size)
    if task == "classify":
        return (images, torch.randint(0, classes, (batch,)))
    generator = torch.Generator().manual_seed(0)
    targets = []
    for _ in range(batch):
        corners = torch.rand(3, 2, generator=generator) * size * 0.6
        sides = torch.rand(3, 2, generator=generator) * size * 0.3 + 16
        boxes = torch.cat([corners, corners + sides], dim=1)
        targets.append({"boxes": boxes, "labels": torch.randint(1, classes, (3,), generator=generator)})
    return (images, targets)


def training_step(model: nn.Module, run: Callable[..., object], task: str, batch: tuple, bf16: bool) -> None:
    with precision(bf16):
        if task == "classify":
            loss = nn.functional.cross_entropy(run(batch[0]), batch[1])
        else:
            loss = sum(run(*batch).values())
    loss.backward()
    for parameter in model.parameters():  # a plain SGD step without an optimizer's own cost differing
        if parameter.grad is not None:
            parameter.data.add_(parameter.grad, alpha=-1e-4)
            parameter.grad = None


def training(task: str, backbone: str, steps: int, warmup: int) -> dict[str, float]:
    """Images/s of SGD steps: eager, compiled and eager bf16; the seconds of the first compiled step."""
    batch_size, size, classes = TRAINING[task]
    name = model_name(task, backbone=backbone)
    batch = training_batch(task, batch_size, size, classes)
    results = {}
    for form in ("eager", "compiled", "bf16"):
        torch.manual_seed(0)
        model = get_model(name, num_classes=classes).train()
        run = compiled(model) if form == "compiled" else model
        step = partial(training_step, model, run, task, batch, form == "bf16")
        first = timed(step)
        if form == "compiled":
            results["compile_s"] = first
        for _ in range(warmup):
            step()
        seconds = [timed(step) for _ in range(steps)]
        results[form] = batch_size / statistics.median(seconds)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--backbones", nargs="+", default=["v3_large"])
    parser.add_argument("--training", nargs="*", default=list(TRAINING), choices=list(TRAINING))
    parser.add_argument("--train-steps", type=int, default=10)
    parser.add_argument("--train-warmup", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache  # compile times as a first run sees them, not an old cache's
        with recorded(__file__, argv):
            flags = cpu_fields()[1]
            units = ", ".join(f"{flag} {'yes' if flag in flags else 'no'}" for flag in BF16_FLAGS)
            print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, inductor; bf16 units: {units}")
            print(
                f"inference, {args.size}x{args.size}, median ms; compile: seconds of the first compiled call, the "
                "inductor cache empty at the start"
            )
            header = (
                f"{'model':<26} {'batch':>5} | {'eager':>8} {'compiled':>8} {'ratio':>6} {'compile s':>9} | "
                f"{'bf16':>8} {'bf16/fp32':>9}"
            )
            print(header)
            print("-" * len(header))
            for name in args.backbones:
                for batch in args.batches:
                    times, compile_seconds = inference(name, batch, args.size, args.rounds, args.warmup)
                    ms = {key: 1000 * statistics.median(values) for key, values in times.items()}
                    for key in compile_seconds:
                        print(
                            f"{f'{name} {key}':<26} {batch:>5} | {ms[key]:>8.2f} {ms[f'{key}_compiled']:>8.2f} "
                            f"{ms[f'{key}_compiled'] / ms[key]:>6.3f} {compile_seconds[key]:>9.1f} | "
                            f"{ms[f'{key}_bf16']:>8.2f} {ms[f'{key}_bf16'] / ms[key]:>9.3f}"
                        )
                    best = [f"{peer}_best_compiled" for peer in PEERS[name]]
                    ratio, low, high = ratio_to_faster(times, "ours_compiled", best)
                    built = ratio_to_faster(times, "ours_compiled", [f"{peer}_compiled" for peer in PEERS[name]])[0]
                    print(
                        f"{f'{name} ours/faster peer':<26} {batch:>5} | compiled: against the best form {ratio:.3f} "
                        f"(95% range {range_text(low, high)}), as built {built:.3f}"
                    )
            print(
                "ratio: compiled / eager. ours: fused, channels-last; <peer>_best: every conv-fed batch norm folded, "
                "channels-last; <peer>: as its library builds it. ours/faster peer: both compiled, the median over "
                "rounds of the ratio timed in the same round, with its bootstrap 95% range. compile s: a model "
                "compiled after one of the same structure reuses its kernels (ours is compiled first). Goal: against "
                "the best form <= 1.0."
            )
            if args.training:
                print(f"\ntraining images/s ({args.train_steps} steps, median); compile: seconds of the first step")
                header = (
                    f"{'task':<10} {'backbone':<10} | {'eager':>7} {'compiled':>8} {'speed-up':>8} {'compile s':>9} | "
                )
                header += f"{'bf16':>7} {'bf16/fp32':>9}"
                print(header)
                print("-" * len(header))
                for task in args.training:
                    backbone = args.backbones[0]
                    r = training(task, backbone, args.train_steps, args.train_warmup)
                    print(
                        f"{task:<10} {backbone:<10} | {r['eager']:>7.1f} {r['compiled']:>8.1f} "
                        f"{r['compiled'] / r['eager']:>8.3f} {r['compile_s']:>9.1f} | {r['bf16']:>7.1f} "
                        f"{r['bf16'] / r['eager']:>9.3f}"
                    )


if __name__ == "__main__":
    main()
