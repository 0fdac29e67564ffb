"""Choose a backbone: every member of the family in one table, from one run on this machine.

Per backbone: parameters and multiply-adds of the 1000-class classifier at 224 px (`backbones.profile`), the
published ImageNet-1k top-1 of its default named weights (`imagenet`; with the input size it was published at),
and CPU latency at batch 1 on `--threads` threads of three deployed networks, each in the faster of onnxruntime and
OpenVINO (which one is printed): the classifier at 224 px in fp32 and in int8 (onnxruntime QDQ, OpenVINO NNCF),
SSDLite at 320 px (91 classes, the network before NMS) and LR-ASPP at 512 px (21 classes), fp32.

The networks have random weights whose batch norms hold the statistics of random images (so activations have the
scale of a trained network's, and no denormal floats slow one backbone down); latency does not depend on the
values otherwise. Each network's runners take turns in a random order (`deploy_speed.benchmark`), medians of
`--rounds` rounds of `--repeat` calls.
Usage: python -m benchmarks.choose_backbone [--rounds N] [--backbones v3_large v4_conv_small ...]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from backbones import list_backbones
from backbones.fuse import fuse
from backbones.profile import count_madds, count_parameters
from backbones.weights import get_weights
from benchmarks.deploy_speed import benchmark, openvino_runner, session_runner
from benchmarks.results import recorded
from deploy.runtimes.onnx import DEFAULT_OPSET, OnnxRuntime, ort_session, quantize_onnx
from deploy.runtimes.openvino import OpenVinoRuntime
from tasks import get_model, get_task
from tasks.models import model_name

CLASSIFIER_SIZE, DETECTOR_SIZE, SEGMENTER_SIZE = 224, 320, 512
CALIBRATION_BATCHES = 4


def with_image_statistics(model: nn.Module, size: int) -> nn.Module:
    """`model` in eval mode, every batch norm holding the mean and variance of its input on random images."""
    for norm in (module for module in model.modules() if isinstance(module, nn.BatchNorm2d)):
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the calibration batches
    model.train()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(4, 3, size, size, generator=generator))
    return model.eval()


def deployed_runners(
    key: str, network: nn.Module, outputs: tuple[str, ...], size: int, threads: int, folder: Path, int8: bool
) -> dict[str, Callable[[], object]]:
    """`<key>_ort` and `<key>_ov` (and `<key>_ort_int8`, `<key>_ov_int8` when `int8`) runners of the folded network,
    exported with a fixed batch of 1."""
    example = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    network = fuse(network)
    onnx_path, ir_path = folder / f"{key}.onnx", folder / f"{key}.openvino.xml"
    OnnxRuntime().export(network, example, onnx_path, outputs, dynamic_batch=False, opset=DEFAULT_OPSET)
    OpenVinoRuntime().export(network, example, ir_path, outputs, dynamic_batch=False)
    runners = {
        f"{key}_ort": session_runner(ort_session(onnx_path, threads, spinning=False), example),
        f"{key}_ov": openvino_runner(ir_path, threads, example),
    }
    if int8:
        generator = torch.Generator().manual_seed(0)
        batches = [torch.randn(1, 3, size, size, generator=generator).numpy() for _ in range(CALIBRATION_BATCHES)]
        int8_onnx = quantize_onnx(onnx_path, folder / f"{key}.int8.onnx", batches)
        with contextlib.redirect_stdout(sys.stderr):  # NNCF's progress bars: on the terminal, not in the record
            int8_ir = OpenVinoRuntime().quantize(network, ir_path, folder / f"{key}.int8.openvino.xml", batches)
        runners[f"{key}_ort_int8"] = session_runner(ort_session(int8_onnx, threads, spinning=False), example)
        runners[f"{key}_ov_int8"] = openvino_runner(int8_ir, threads, example)
    return runners


def fastest(ms: dict[str, float], key: str, suffix: str = "") -> tuple[float, str]:
    """The faster of `key`'s onnxruntime and OpenVINO medians, and which runtime it was."""
    ort, ov = ms[f"{key}_ort{suffix}"], ms[f"{key}_ov{suffix}"]
    return (ort, "ort") if ort <= ov else (ov, "ov")


def measure(name: str, threads: int, rounds: int, repeat: int) -> dict[str, float]:
    """Median ms of every runner of `name`'s three networks."""
    networks = {  # key: (task, model name, input side, int8 too)
        "cls": ("classify", name, CLASSIFIER_SIZE, True),
        "ssd": ("detect", model_name("detect", backbone=name), DETECTOR_SIZE, False),
        "seg": ("segment", model_name("segment", backbone=name, head="lraspp"), SEGMENTER_SIZE, False),
    }
    runners: dict[str, Callable[[], object]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for key, (task_name, model, size, int8) in networks.items():
            task = get_task(task_name)
            network = with_image_statistics(task.exportable(get_model(model).eval(), size), size)
            runners |= deployed_runners(key, network, task.outputs, size, threads, Path(folder), int8)
        return benchmark(runners, rounds, warmup=2, repeat=repeat)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5, help="calls in a row per runner and round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backbones", nargs="+", default=list_backbones(), choices=list_backbones())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with recorded(__file__, argv):
        print(
            f"batch 1, {args.threads} threads, median ms of {args.rounds} rounds of {args.repeat} calls; each network "
            "in the faster of onnxruntime (ort) and OpenVINO (ov)"
        )
        header = (
            f"{'backbone':<16} | {'params':>7} {'MAdds':>6} | {'top-1':>6} {'at':>4} | {'classifier fp32':>15} "
            f"{'int8':>11} {'int8/fp32':>9} | {'SSDLite 320':>12} | {'LR-ASPP 512':>12}"
        )
        print(header)
        print("-" * len(header))
        for name in args.backbones:
            classifier = get_model(name)
            params, madds = count_parameters(classifier), count_madds(classifier, CLASSIFIER_SIZE)
            weights = get_weights(name, "imagenet")
            ms = measure(name, args.threads, args.rounds, args.repeat)
            fp32, fp32_runtime = fastest(ms, "cls")
            int8, int8_runtime = fastest(ms, "cls", "_int8")
            ssd, ssd_runtime = fastest(ms, "ssd")
            seg, seg_runtime = fastest(ms, "seg")
            print(
                f"{name:<16} | {params / 1e6:>6.2f}M {madds / 1e6:>5.0f}M | "
                f"{weights.metrics['ImageNet-1k top-1']:>6.2f} {weights.image_size:>4} | "
                f"{fp32:>9.2f} ({fp32_runtime:<3}) {int8:>6.2f} ({int8_runtime:<3}) {int8 / fp32:>9.2f} | "
                f"{ssd:>6.2f} ({ssd_runtime:<3}) | {seg:>6.2f} ({seg_runtime:<3})"
            )
        print(
            "params, MAdds: the 1000-class classifier at 224 px; top-1: the default named weights' published "
            "ImageNet-1k top-1, at the input size `at`; latency columns: ms (runtime)."
        )


if __name__ == "__main__":
    main()
