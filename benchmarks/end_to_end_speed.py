"""End-to-end detector files against torchvision's own end-to-end ONNX export of SSDLite, on the same weights
(issue 23, "Speed and size").

The weights: torchvision's `ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=91)` built
after `torch.manual_seed(--seed)`, its batch norms holding the measured statistics of 8 synthetic images (so that
the detections depend on the image), then each level's class logits scaled (its last conv's weights and bias) and
the background's raised (its bias), by one of two NMS loads (`--loads`, both by default), since the post-processing's
cost, and so every ratio against torchvision's, depends on how many (anchor, class) scores pass the 0.001 threshold:
  few: logits x 3, background +15: a few hundred candidates per image, as a trained detector gives (445 and 300
       detections in the batch-1 scene; 6,629 and 1,561 in the batch of 8, one of whose scenes, a
       solid background with one small shape, has none).
  all: logits x 1, background +5, the issue's setting: 284,744 of the 3234 x 90 scores pass 0.001 in the batch-1
       scene (torchvision's initialisation alone gives logits of ~0, so with +4..+6 every class scores
       1 / (e^bias + 90) > 0.001 on every anchor); the per-class top 300 feed 27,000 boxes per image to the NMS.
       This is the load behind the issue's 120 ms.
The state dict is saved to disk and read by our detection task as a user reads torchvision's published file
(`tasks.detect.weights`); our checkpoint records torchvision's preprocessing (mean and std 0.5, 320 x 320
stretched), and the script prints the largest box and score difference between our `Detector` and torchvision's
eager model on one image, so the comparison is on the same weights and detections.

The files: torchvision's model exported its own way (`torch.onnx.export`, TorchScript-based exporter, opset 17, float
0..1 input, its batch fixed: one file per batch size), also converted to OpenVINO; ours by `export_checkpoint`, end
to end (uint8 input, normalisation, network, decoding and post-processing with one NonMaxSuppression node; dynamic
batch) and network only (normalised float input, `scores` and `boxes`; dynamic batch), in ONNX and OpenVINO. Sizes,
node counts and TopK / NonZero / NonMaxSuppression counts are printed beside the times.

The times: per `--batch-sizes` (1 and 8), on `--threads` threads, the same synthetic 320 x 320 scenes for every
model (shapes on solid, gradient and noise backgrounds, `tasks.detect.data.synthetic.draw_scene`; torchvision's
model gets them as float 0..1, our network-only file normalised, our end-to-end file as uint8). Runtimes: eager
PyTorch (torchvision's model, inference_mode), onnxruntime (CPU provider, all graph optimisations, worker threads not
spinning between runs, as in `benchmarks.deploy_speed`) and OpenVINO (CPU plugin, f32, latency hint). Each runtime's
models take turns in a random order, `--repeat` calls each per turn of which the first is not counted, `--rounds`
rounds after `--warmup`; medians (`benchmarks.deploy_speed.benchmark`). Goals: ours end to end <= 0.2 x
torchvision's end-to-end ONNX in the same runtime, and <= 1.25 x our network-only file.

A second section (`--startup`, on by default) times the torch-free runner (`deploy.run`) against
`Detector.from_checkpoint(...).predict(...)` in fresh processes on the same `--startup-images` PNG files (480 x 480,
resized to 320 by both): seconds from the process start to the first image's result and to the last, and the
process's peak resident memory (its own VmHWM: a child's rusage would count the benchmark's memory, which it
inherits until its exec), medians of `--startup-repeats` runs taken in a random order after one uncounted run of
each (the files and libraries are then in the page cache for all). The runner's CLI (`python -m deploy.run MODEL
FOLDER --out DIR`, through `runpy` so that it can report its memory; it also draws and writes every image) is timed
to its end, on the first of `--loads`' files.
Usage: python -m benchmarks.end_to_end_speed [--rounds N] [--batch-sizes 1 8] [--threads 2] [--loads few all]
       [--no-startup]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from torch import nn
from torchvision.models.detection import ssdlite320_mobilenet_v3_large

from backbones.weights.categories import COCO_CATEGORIES
from backbones.weights.registry import HALF
from benchmarks.deploy_speed import benchmark
from benchmarks.results import recorded
from deploy.runtimes import INPUT_NAME
from deploy.runtimes.onnx import DEFAULT_OPSET, ort_session
from deploy.runtimes.openvino import compile_model
from tasks.common.export import export_checkpoint
from tasks.detect import DetectionTask, Detector
from tasks.detect.data.module import DetectionDataModule
from tasks.detect.data.synthetic import draw_scene

ROOT = Path(__file__).resolve().parents[1]
SIZE = 320  # torchvision's SSDLite input; the images are this size, so its own resize is a no-op
CLASSES = len(COCO_CATEGORIES)  # 91, the background included
CALIBRATION_IMAGES = 8
# draw_scene seeds: the batch-norm statistics' images, the timed images, the start-up section's files
CALIBRATION_SEED, TIMED_SEED, FILES_SEED = 1, 2, 3
STARTUP_IMAGE_SIZE = 480
E2E_GOAL, NETWORK_GOAL = 0.2, 1.25  # ours end to end / torchvision's end to end; / our network-only file
COUNTED_OPS = ("TopK", "NonZero", "NonMaxSuppression")
# NMS load -> (factor on every class logit, added to the background's): see the module docstring
LOADS = {"few": (3.0, 15.0), "all": (1.0, 5.0)}

# A call and what it returns turned into a count: detections (end to end) or candidates (network only).
Runner = tuple[Callable[[], Any], Callable[[Any], int]]


# -- the weights ---------------------------------------------------------------------------------------------------
def scenes(seed: int, count: int, size: int = SIZE) -> torch.Tensor:
    """`count` synthetic scenes as uint8 [count, 3, size, size]."""
    arrays = [draw_scene(np.random.default_rng([seed, i]), size)[0] for i in range(count)]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def torchvision_ssdlite(seed: int, class_scale: float, background_bias: float) -> nn.Module:
    """torchvision's SSDLite320 V3-Large with random weights (see the module docstring), in eval mode."""
    torch.manual_seed(seed)
    model = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=CLASSES)
    norms = [module for module in model.modules() if isinstance(module, nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average: the statistics of the one batch below
    images = scenes(CALIBRATION_SEED, CALIBRATION_IMAGES).float() / 255
    model.train()
    with torch.no_grad():
        model.head(list(model.backbone((images - 0.5) / 0.5).values()))  # torchvision's normalisation
        for level in model.head.classification_head.module_list:
            last = level[1]  # each level's last conv: anchors x classes channels, anchor-major
            last.weight.mul_(class_scale)
            last.bias.mul_(class_scale)
            last.bias.view(-1, CLASSES)[:, 0] += background_bias
    return model.eval()


def our_checkpoint(state_dict: Path, folder: Path) -> Path:
    """Our detection task built from torchvision's state dict at `state_dict` (read as published weights), saved as
    Lightning saves a checkpoint, with a data module recording torchvision's preprocessing (its tiny synthetic
    validation split is what the export check runs on)."""
    module = DetectionTask(
        "v3_large",
        CLASSES,
        image_size=SIZE,
        reduced_tail=True,  # torchvision's SSDLite halves the last stage
        weights=str(state_dict),
        class_names=list(COCO_CATEGORIES),
    )
    data = DetectionDataModule(
        image_size=SIZE,
        keep_aspect_ratio=False,
        mean=HALF,
        std=HALF,
        synthetic_train_images=1,
        synthetic_val_images=3,
        synthetic_image_size=SIZE,
        num_workers=0,
        cache_dir=str(folder / "cache"),
    )
    checkpoint = {
        "pytorch-lightning_version": pl.__version__,
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        "datamodule_hyper_parameters": dict(data.hparams),
    }
    module.on_save_checkpoint(checkpoint)  # the task and model name every checkpoint records
    path = folder / "ours.ckpt"
    torch.save(checkpoint, path)
    return path


def largest_difference(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> tuple[float, float, int]:
    """(largest box difference, largest score difference, count difference): each of torchvision's detections
    against ours of the same class with the nearest box (near-equal scores may come in either order)."""
    if len(theirs["scores"]) == 0 or len(ours["scores"]) == 0:
        return 0.0, 0.0, len(ours["scores"]) - len(theirs["scores"])
    box_distance = (theirs["boxes"][:, None].double() - ours["boxes"][None].double()).abs().amax(2)
    box_distance[theirs["labels"][:, None] != ours["labels"][None]] = float("inf")
    distance, match = box_distance.min(1)
    scores = (theirs["scores"].double() - ours["scores"][match].double()).abs()
    return float(distance.max()), float(scores.max()), len(ours["scores"]) - len(theirs["scores"])


# -- the files -----------------------------------------------------------------------------------------------------
def export_torchvision(model: nn.Module, example: torch.Tensor, path: Path) -> Path:
    """torchvision's model exported its own way: its whole forward traced on a fixed batch of float 0..1 images."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy-exporter notice, tracer warnings of torchvision's Python loops
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            opset_version=DEFAULT_OPSET,
            input_names=[INPUT_NAME],
            do_constant_folding=True,
        )
    return path


def to_openvino(onnx_path: Path) -> Path:
    """An ONNX file converted to an OpenVINO IR beside it (weights kept f32), as `deploy.runtimes.openvino` does."""
    import openvino

    path = onnx_path.with_suffix(".openvino.xml")
    openvino.save_model(openvino.convert_model(str(onnx_path)), str(path), compress_to_fp16=False)
    return path


@dataclass
class FileFacts:
    megabytes: float
    nodes: int
    ops: dict[str, int]


def onnx_facts(path: Path) -> FileFacts:
    """Size and node counts (subgraphs included) of an ONNX file."""
    import onnx

    counts: dict[str, int] = {}

    def walk(graph: Any) -> None:
        for node in graph.node:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
            for attribute in node.attribute:
                for sub in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
                    walk(sub)

    walk(onnx.load(str(path)).graph)
    return FileFacts(path.stat().st_size / 1e6, sum(counts.values()), {op: counts.get(op, 0) for op in COUNTED_OPS})


def openvino_megabytes(path: Path) -> float:
    return (path.stat().st_size + path.with_suffix(".bin").stat().st_size) / 1e6


# -- the runners ---------------------------------------------------------------------------------------------------
def ort_runner(path: Path, threads: int, feed: np.ndarray) -> Callable[[], list[np.ndarray]]:
    session = ort_session(path, threads, spinning=False)
    name = session.get_inputs()[0].name
    return lambda: session.run(None, {name: feed})


def openvino_runner(path: Path, threads: int, feed: np.ndarray) -> Callable[[], list[np.ndarray]]:
    compiled = compile_model(path, threads)
    request = compiled.create_infer_request()

    def run() -> list[np.ndarray]:
        request.infer([feed])
        return [request.get_output_tensor(i).data for i in range(len(compiled.outputs))]

    return run


def eager_runner(model: nn.Module, images: torch.Tensor) -> Callable[[], Any]:
    batch = list(images)  # torchvision's detectors take a list of float 0..1 images

    def run() -> Any:
        with torch.inference_mode():
            return model(batch)

    return run


def torchvision_file_count(outputs: list[np.ndarray]) -> int:
    """Detections in torchvision's exported outputs: (boxes, scores, labels) per image."""
    return sum(len(scores) for scores in outputs[1::3])


def build_runners(
    files: dict[str, Path], torchvision: nn.Module, pixels: torch.Tensor, threads: int, score_threshold: float
) -> tuple[dict[str, Runner], dict[str, str]]:
    """Every runner at one batch (keys `<model>_<runtime>`, torchvision's eager model `torchvision`, as
    `deploy_speed.benchmark` groups them), and why any is missing."""
    floats = pixels.float() / 255
    normalised = ((floats - 0.5) / 0.5).numpy()
    uint8, floats_np = pixels.numpy(), floats.numpy()

    def candidates(outputs: list[np.ndarray]) -> int:
        return int((outputs[0][:, :, 1:] > score_threshold).sum())

    def e2e_count(outputs: list[np.ndarray]) -> int:
        return int(np.asarray(outputs[1]).sum())

    runners: dict[str, Runner] = {
        "torchvision": (eager_runner(torchvision, floats), lambda out: sum(len(d["scores"]) for d in out)),
        "tv_ort": (ort_runner(files["tv_onnx"], threads, floats_np), torchvision_file_count),
        "e2e_ort": (ort_runner(files["e2e_onnx"], threads, uint8), e2e_count),
        "net_ort": (ort_runner(files["net_onnx"], threads, normalised), candidates),
    }
    missing = {}
    if "tv_ov" in files:
        try:
            runners["tv_ov"] = (openvino_runner(files["tv_ov"], threads, floats_np), torchvision_file_count)
        except Exception as error:  # noqa: BLE001  (reported in the table: a compile failure is a finding)
            missing["tv_ov"] = f"OpenVINO does not compile torchvision's IR: {type(error).__name__}: {error}"
    runners["e2e_ov"] = (openvino_runner(files["e2e_ov"], threads, uint8), e2e_count)
    runners["net_ov"] = (openvino_runner(files["net_ov"], threads, normalised), candidates)
    return runners, missing


# -- the tables ----------------------------------------------------------------------------------------------------
RUNTIMES = {"eager": "eager PyTorch", "ort": "onnxruntime", "ov": "OpenVINO"}


def print_speed_table(batch: int, ms: dict[str, float], counts: dict[str, int], missing: dict[str, str]) -> None:
    header = (
        f"{'runtime':<13} | {'tv e2e':>7} {'ours e2e':>8} {'ours net':>8} | {'e2e/tv':>6} {'e2e/net':>7} | "
        f"{'detections tv':>13} {'ours':>5} {'candidates':>10}"
    )
    print(f"\nbatch {batch}: median ms per call")
    print(header)
    print("-" * len(header))

    def cell(key: str, width: int, digits: int = 1) -> str:
        return f"{ms[key]:>{width}.{digits}f}" if key in ms else f"{'-':>{width}}"

    def ratio(top: str, bottom: str, goal: float) -> str:
        if top not in ms or bottom not in ms:
            return "n/a"
        value = ms[top] / ms[bottom]
        return f"{value:.2f}" + ("" if value <= goal else "!")

    def count(key: str, width: int) -> str:
        return f"{counts[key]:>{width}}" if key in counts else f"{'-':>{width}}"

    for runtime, label in RUNTIMES.items():
        tv = "torchvision" if runtime == "eager" else f"tv_{runtime}"
        e2e, net = f"e2e_{runtime}", f"net_{runtime}"
        print(
            f"{label:<13} | {cell(tv, 7)} {cell(e2e, 8)} {cell(net, 8)} | {ratio(e2e, tv, E2E_GOAL):>6} "
            f"{ratio(e2e, net, NETWORK_GOAL):>7} | {count(tv, 13)} {count(e2e, 5)} {count(net, 10)}"
        )
    for key, reason in missing.items():
        print(f"{key}: {reason}")
    print(
        f"tv e2e: torchvision's model (eager) and its own end-to-end export (batch {batch} fixed); ours e2e: our "
        "end-to-end file (dynamic batch); ours net: our network-only file. e2e/tv: ours e2e / torchvision's in the "
        f"same runtime (goal <= {E2E_GOAL}); e2e/net (goal <= {NETWORK_GOAL}); '!' marks a missed goal. detections: "
        "summed over the batch; candidates: class scores above the score threshold, what the post-processing takes in."
    )


def print_file_table(facts: dict[str, FileFacts], openvino_sizes: dict[str, float]) -> None:
    header = f"{'file':<36} | {'MB':>6} {'OV MB':>6} | {'nodes':>6} " + " ".join(f"{op:>6}" for op in COUNTED_OPS)
    print("\nfiles")
    print(header)
    print("-" * len(header))
    for name, fact in facts.items():
        ov = f"{openvino_sizes[name]:>6.1f}" if name in openvino_sizes else f"{'-':>6}"
        ops = " ".join(f"{fact.ops[op]:>{max(6, len(op))}}" for op in COUNTED_OPS)
        print(f"{name:<36} | {fact.megabytes:>6.1f} {ov} | {fact.nodes:>6} {ops}")
    print("MB: the ONNX file; OV MB: its OpenVINO IR (.xml + .bin, f32 weights); nodes counted in the ONNX file.")


# -- start-up and memory -----------------------------------------------------------------------------------------
# Every child ends by printing one JSON line: time.time() after the first image's result ("first"; the CLI: null) and
# at its end, its peak resident memory, whether torch was imported, and how many detections it found.
REPORT = """
import json, sys, time
def report(first, found):
    peak = None
    try:  # VmHWM: this process's own peak, not the parent's that a child's rusage inherits until its exec
        with open("/proc/self/status") as status:
            peak = next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        pass
    print(json.dumps({"first": first, "end": time.time(), "peak_mb": peak, "torch": "torch" in sys.modules,
                      "detections": found}), flush=True)
"""
# argv: model file, threads, image folder
RUNNER_CHILD = (
    REPORT
    + """
from pathlib import Path
from deploy.run import load
model = load(sys.argv[1], threads=int(sys.argv[2]))
paths = sorted(str(p) for p in Path(sys.argv[3]).iterdir())
results = model(paths[:1])
first = time.time()
results += model(paths[1:])
report(first, sum(len(r["scores"]) for r in results))
"""
)
# argv: checkpoint, threads, image folder
DETECTOR_CHILD = (
    REPORT
    + """
from pathlib import Path
import torch
torch.set_num_threads(int(sys.argv[2]))
from tasks.detect import Detector
detector = Detector.from_checkpoint(sys.argv[1])
paths = sorted(str(p) for p in Path(sys.argv[3]).iterdir())
results = detector.predict(paths[:1])
first = time.time()
results += detector.predict(paths[1:])
report(first, sum(len(r["scores"]) for r in results))
"""
)
# argv: what `python -m deploy.run` takes
CLI_CHILD = (
    REPORT
    + """
import runpy
sys.argv = ["deploy.run", *sys.argv[1:]]
try:
    runpy.run_module("deploy.run", run_name="__main__", alter_sys=True)
finally:
    report(None, None)
"""
)


@dataclass
class ChildRun:
    first: float | None  # seconds from the launch to the first image's result (None: not reported)
    total: float
    peak_mb: float | None
    torch: bool
    detections: int | None


def run_child(command: list[str]) -> ChildRun:
    """Run `command` in a fresh process from the repository root; its times from the launch and what it reports."""
    start = time.time()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:2])} ... {' '.join(command[3:])} failed:\n{done.stderr[-2000:]}")
    report = json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])
    first = report["first"] - start if report["first"] is not None else None
    return ChildRun(first, report["end"] - start, report["peak_mb"], report["torch"], report["detections"])


def write_images(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(scenes(FILES_SEED, count, STARTUP_IMAGE_SIZE)):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{index:03d}.png")
    return folder


def startup_section(
    files: dict[str, Path], checkpoint: Path, folder: Path, args: argparse.Namespace, load: str
) -> None:
    """The runner and the `Detector` in fresh processes (see the module docstring), on the files of NMS load `load`."""
    images = str(write_images(folder / "images", args.startup_images))
    threads = str(args.threads)
    python = [sys.executable, "-c"]
    commands = {
        "deploy.run load() + call, ONNX": [*python, RUNNER_CHILD, str(files["e2e_onnx"]), threads, images],
        "deploy.run load() + call, OpenVINO": [*python, RUNNER_CHILD, str(files["e2e_ov"]), threads, images],
        "Detector.from_checkpoint + predict": [*python, DETECTOR_CHILD, str(checkpoint), threads, images],
        "python -m deploy.run (CLI), ONNX": [*python, CLI_CHILD, str(files["e2e_onnx"]), images, "--threads", threads],
    }
    runs: dict[str, list[ChildRun]] = {name: [] for name in commands}
    order = list(commands)
    shuffle = random.Random(1).shuffle
    for repeat in range(1 + args.startup_repeats):  # the first pass fills the page cache and is not counted
        shuffle(order)
        for name in order:
            out = ["--out", str(folder / f"out{repeat}")] if "CLI" in name else []
            found = run_child([*commands[name], *out])
            if repeat > 0:
                runs[name].append(found)
    print(
        f"\nstart-up and memory (NMS load `{load}`): fresh processes on {args.startup_images} PNG images of "
        f"{STARTUP_IMAGE_SIZE} x {STARTUP_IMAGE_SIZE}, {args.threads} threads, the first image alone then the rest "
        f"(batches of 8); medians of {args.startup_repeats} runs"
    )
    header = f"{'process':<36} | {'first s':>7} {'total s':>7} {'peak MB':>7} | {'torch':>5} {'detections':>10}"
    print(header)
    print("-" * len(header))
    summary: dict[str, tuple[float | None, float, float | None]] = {}
    for name, found in runs.items():
        first = statistics.median(r.first for r in found) if found[0].first is not None else None
        peak = statistics.median(r.peak_mb for r in found) if found[0].peak_mb is not None else None
        total = statistics.median(r.total for r in found)
        summary[name] = first, total, peak
        first_cell = f"{first:>7.2f}" if first is not None else f"{'-':>7}"
        peak_cell = f"{peak:>7.0f}" if peak is not None else f"{'-':>7}"
        detections = f"{found[0].detections:>10}" if found[0].detections is not None else f"{'-':>10}"
        torch_cell = "yes" if found[0].torch else "no"
        print(f"{name:<36} | {first_cell} {total:>7.2f} {peak_cell} | {torch_cell:>5} {detections}")
    reference = summary["Detector.from_checkpoint + predict"]
    for name, (first, total, peak) in summary.items():
        if name.startswith("Detector"):
            continue
        parts = [f"first {first / reference[0]:.2f}"] if first is not None and reference[0] else []
        parts.append(f"total {total / reference[1]:.2f}")
        if peak is not None and reference[2]:
            parts.append(f"peak memory {peak / reference[2]:.2f}")
        print(f"{name} / Detector: {', '.join(parts)}")
    print(
        "first / total: seconds from the process launch (interpreter, imports, loading included) to the first "
        "image's result and to the last; peak MB: the process's peak resident memory (VmHWM); torch: whether torch "
        "was imported; the CLI also draws and writes every image and is timed to its end."
    )


# -- main ----------------------------------------------------------------------------------------------------------
def export_ours(checkpoint: Path, folder: Path) -> dict[str, Path]:
    """Our end-to-end and network-only files, ONNX and OpenVINO, dynamic batch (each checked by the export)."""
    files = {}
    for end_to_end, stem in ((True, "e2e"), (False, "net")):
        for format, key, suffix in (("onnx", "onnx", ".onnx"), ("openvino", "ov", ".openvino.xml")):
            output = folder / f"ours_{stem}{suffix}"
            exported = export_checkpoint(
                "detect", checkpoint, format, output=output, dynamic_batch=True, end_to_end=end_to_end
            )
            files[f"{stem}_{key}"] = exported.path
    return files


def measure_load(load: str, folder: Path, args: argparse.Namespace, with_files: bool) -> tuple[dict[str, Path], Path]:
    """The weights of one NMS load, our checkpoint and files, the speed table per batch size (and the file table
    when `with_files`); returns our files and checkpoint."""
    class_scale, background_bias = LOADS[load]
    torchvision_model = torchvision_ssdlite(args.seed, class_scale, background_bias)
    state_dict = folder / "torchvision_ssdlite.pth"
    torch.save(torchvision_model.state_dict(), state_dict)
    checkpoint = our_checkpoint(state_dict, folder)
    detector = Detector.from_checkpoint(checkpoint)
    postprocess = detector.model.detection_postprocess
    print(
        f"\n== NMS load `{load}`: torchvision's random SSDLite (seed {args.seed}, batch-norm statistics of "
        f"{CALIBRATION_IMAGES} synthetic scenes), class logits x {class_scale:g}, background +{background_bias:g}; "
        f"post-processing: score > {postprocess.score_threshold:g}, IoU {postprocess.iou_threshold:g}, "
        f"{postprocess.candidates_per_class} per class, {postprocess.max_detections} per image"
    )
    image = scenes(TIMED_SEED, 1)
    with torch.inference_mode():
        (theirs,) = torchvision_model(list(image.float() / 255))
    (ours,) = detector.predict([np.ascontiguousarray(image[0].permute(1, 2, 0).numpy())])
    box, score, count = largest_difference(ours, theirs)
    print(
        f"ours (Detector) vs torchvision (eager) on one image: {len(theirs['scores'])} detections, largest box "
        f"difference {box:.1e} px, score {score:.1e}, count {count:+d}"
    )
    files = export_ours(checkpoint, folder)
    facts = {name: onnx_facts(files[f"{key}_onnx"]) for key, name in (("e2e", OURS_E2E), ("net", OURS_NET))}
    openvino_sizes = {
        name: openvino_megabytes(files[f"{key}_ov"]) for key, name in (("e2e", OURS_E2E), ("net", OURS_NET))
    }
    for batch in args.batch_sizes:
        pixels = scenes(TIMED_SEED, batch)
        name = f"torchvision end to end (batch {batch})"
        files["tv_onnx"] = export_torchvision(torchvision_model, pixels.float() / 255, folder / f"tv_b{batch}.onnx")
        facts[name] = onnx_facts(files["tv_onnx"])
        missing: dict[str, str] = {}
        files.pop("tv_ov", None)
        try:
            files["tv_ov"] = to_openvino(files["tv_onnx"])
            openvino_sizes[name] = openvino_megabytes(files["tv_ov"])
        except Exception as error:  # noqa: BLE001  (reported: a conversion failure is a finding)
            missing["tv_ov"] = f"OpenVINO does not convert torchvision's ONNX: {type(error).__name__}: {error}"
        runners, not_compiled = build_runners(
            files, torchvision_model, pixels, args.threads, postprocess.score_threshold
        )
        missing |= not_compiled
        counts = {key: count(call()) for key, (call, count) in runners.items()}
        ms = benchmark({key: call for key, (call, _) in runners.items()}, args.rounds, args.warmup, args.repeat)
        print_speed_table(batch, ms, counts, missing)
        del runners  # the sessions and compiled models
    if with_files:
        print_file_table(facts, openvino_sizes)
    return files, checkpoint


OURS_E2E, OURS_NET = "ours end to end (dynamic batch)", "ours network only (dynamic batch)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3, help="calls in a row per model and turn (first not counted)")
    parser.add_argument("--warmup", type=int, default=1, help="rounds not counted")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--loads", nargs="+", default=list(LOADS), choices=list(LOADS), help="NMS loads (see above)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--startup", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--startup-images", type=int, default=16)
    parser.add_argument("--startup-repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with recorded(__file__, argv):
        with tempfile.TemporaryDirectory() as temporary:
            run(args, Path(temporary))


def run(args: argparse.Namespace, temporary: Path) -> None:
    """Every load's tables, then the start-up section; files under `temporary`."""
    import onnxruntime
    import openvino
    import torchvision

    print(
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, onnxruntime {onnxruntime.__version__}, "
        f"openvino {openvino.__version__}; {args.threads} threads, {SIZE} x {SIZE}, {CLASSES} classes; median ms "
        f"of {args.rounds} rounds of {args.repeat} calls (first not counted); onnxruntime threads not spinning"
    )
    measured = []
    for index, load in enumerate(args.loads):
        folder = temporary / load
        folder.mkdir()
        measured.append(measure_load(load, folder, args, with_files=index == 0))
    if args.startup:
        files, checkpoint = measured[0]
        startup_section(files, checkpoint, temporary, args, args.loads[0])


if __name__ == "__main__":
    main()
