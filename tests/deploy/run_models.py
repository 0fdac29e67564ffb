"""Model files that follow the end-to-end contract of `deploy.metadata`, for testing `deploy.run` without trained
models: tiny torch modules taking uint8 RGB [N, 3, H, W] whose outputs are simple functions of the pixels (so a test
computes the expected results itself), exported to ONNX with our metadata, and converted to OpenVINO IR.

- `FakeDetector`: `detections` [N, MAX_DETECTIONS, 6] with fixed boxes (some beyond the input, to be clamped), each
  image's channel means / 255 as the scores, one or three valid rows (three where the image is bright on average);
- `FakeDetectorOutputs`: `scores` [N, A, K] and `boxes` [N, A, 4] for the runner's own NMS;
- `FakeSegmenter`: `mask` [N, H, W] = red // 64 (classes 0..3), and `logits`;
- `FakeClassifier`: `probabilities` [N, K], the softmax of (mean red, mean green, mean blue, 0, ...) / 32.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import Tensor, nn

from deploy.metadata import KEY, encode

SIZE = 32  # the detectors' and classifiers' input side
MAX_DETECTIONS = 5
# (x1, y1, x2, y2) in input pixels and class index of each fake detection
BOXES = [[-4.0, 2.0, 20.0, 40.0], [3.0, 5.5, 12.0, 9.0], [10.0, 10.0, 30.0, 31.0]]
LABELS = [1, 3, 2]
DETECT_NAMES = ["background", "cat", "dog", "bird"]
SEGMENT_NAMES = ["background", "road", "car", "sky"]
CLASSIFY_NAMES = [f"class{i}" for i in range(7)]
CATEGORY_IDS = [0, 17, 18, 16]  # COCO's ids of the detection classes
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class FakeDetector(nn.Module):
    """See the module docstring: detections with NMS inside."""

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        means = images.float().mean((2, 3)) / 255.0  # [N, 3]
        count = images.shape[0]
        boxes = torch.tensor(BOXES).expand(count, -1, -1)
        labels = torch.tensor(LABELS, dtype=torch.float32).expand(count, -1)
        rows = torch.cat([boxes, means[:, :, None], labels[:, :, None]], dim=2)  # [N, 3, 6]
        valid = 1 + 2 * (means.mean(1) > 0.5).long()  # 1 or 3
        keep = (torch.arange(3)[None, :] < valid[:, None]).float()[:, :, None]
        rows = nn.functional.pad(rows * keep, (0, 0, 0, MAX_DETECTIONS - 3))
        return rows, valid


class FakeDetectorOutputs(nn.Module):
    """See the module docstring: softmax scores [N, A, K] and boxes [N, A, 4] of A = `anchors` default boxes; the
    class logits are fixed random numbers plus 4 x the image's mean red, so that images differ."""

    def __init__(self, anchors: int = 60, classes: int = len(DETECT_NAMES)) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        corners = torch.rand(anchors, 2, generator=generator) * (SIZE - 8)
        sides = 4 + torch.rand(anchors, 2, generator=generator) * 8
        self.register_buffer("boxes", torch.cat([corners, corners + sides], dim=1))
        self.register_buffer("logits", torch.randn(anchors, classes, generator=generator) * 2)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        red = images[:, 0].float().mean((1, 2)) / 255.0  # [N]
        logits = self.logits[None] + 4 * red[:, None, None] * torch.linspace(-1, 1, self.logits.shape[1])
        return logits.softmax(-1), self.boxes.expand(images.shape[0], -1, -1)


class FakeSegmenter(nn.Module):
    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        mask = torch.div(images[:, 0].long(), 64, rounding_mode="floor")
        logits = nn.functional.one_hot(mask, len(SEGMENT_NAMES)).permute(0, 3, 1, 2).float()
        return mask, logits


class FakeClassifier(nn.Module):
    def forward(self, images: Tensor) -> Tensor:
        means = images.float().mean((2, 3))  # [N, 3]
        logits = nn.functional.pad(means, (0, len(CLASSIFY_NAMES) - 3)) / 32.0
        return logits.softmax(1)


def fake_detections(image: np.ndarray) -> dict[str, np.ndarray]:
    """What `FakeDetector` finds on its uint8 input [S, S, 3], in input pixels."""
    means = image.reshape(-1, 3).astype(np.float64).mean(0) / 255.0
    valid = 3 if means.mean() > 0.5 else 1
    boxes = np.asarray(BOXES, dtype=np.float32)[:valid]
    return {"boxes": boxes, "scores": means[:valid].astype(np.float32), "labels": np.asarray(LABELS[:valid])}


def fake_probabilities(image: np.ndarray) -> np.ndarray:
    """What `FakeClassifier` gives for its uint8 input [R, R, 3]."""
    logits = np.zeros(len(CLASSIFY_NAMES))
    logits[:3] = image.reshape(-1, 3).astype(np.float64).mean(0) / 32.0
    exp = np.exp(logits - logits.max())
    return exp / exp.sum()


def metadata(task: str, **input_overrides: Any) -> dict[str, Any]:
    """The contract metadata of a fake model of `task`; `input_overrides` replace entries of its `input`."""
    image = {"name": "images", "dtype": "uint8", "layout": "NCHW", "color": "RGB", "normalization": "inside"}
    image |= {"mean": list(MEAN), "std": list(STD), "batch": "dynamic", "interpolation": "bilinear"}
    if task == "detect":
        image |= {"size": [SIZE, SIZE], "resize": "stretch", "pad_value": [255.0 * m for m in MEAN]}
        found = {"outputs": ["detections", "num_detections"], "class_names": DETECT_NAMES}
        found |= {"category_ids": CATEGORY_IDS, "postprocess": {"nms": "inside"}}
    elif task == "segment":
        image |= {"size": None, "resize": "none"}
        found = {"outputs": ["mask", "logits"], "class_names": SEGMENT_NAMES}
    else:
        image |= {"size": [SIZE, SIZE], "resize": "shorter_side_crop", "resize_side": int(SIZE / 0.875)}
        found = {"outputs": ["probabilities"], "class_names": CLASSIFY_NAMES}
    return {"task": task, "model": f"fake_{task}", "input": image | input_overrides, **found}


def export_onnx(module: nn.Module, path: Path, outputs: list[str], size: tuple[int, int], batch: int | None) -> Path:
    """`module` exported to ONNX (opset 17) for uint8 [N, 3, H, W]: N dynamic unless `batch`, H and W dynamic where
    `size` holds 0."""
    example = torch.zeros(batch or 2, 3, size[0] or 24, size[1] or 24, dtype=torch.uint8)
    axes: dict[int, str] = {} if batch else {0: "batch"}
    axes |= {2: "height"} if not size[0] else {}
    axes |= {3: "width"} if not size[1] else {}
    dynamic = {"images": axes} | {name: {0: "batch"} for name in outputs if not batch}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notice
        torch.onnx.export(
            module.eval(),
            (example,),
            str(path),
            input_names=["images"],
            output_names=outputs,
            dynamic_axes=dynamic,
            opset_version=17,
            dynamo=False,
        )
    return path


def add_metadata(path: Path, data: dict[str, Any]) -> Path:
    """The ONNX file at `path` with `data` as its metadata (`deploy.metadata`)."""
    model = onnx.load(str(path))
    entry = model.metadata_props.add()
    entry.key, entry.value = KEY, encode(data)
    onnx.save(model, str(path))
    return path


def contract_model(task: str, path: Path, nms: str = "inside", **input_overrides: Any) -> tuple[Path, dict[str, Any]]:
    """A fake `task` model at `path` (.onnx) with its metadata; `nms="runner"` for a detector without NMS."""
    data = metadata(task, **input_overrides)
    batch = data["input"]["batch"]
    batch = None if batch == "dynamic" else batch
    size = tuple(data["input"]["size"] or (0, 0))
    if task == "detect" and nms == "runner":
        postprocess = {"score_threshold": 0.05, "iou_threshold": 0.5, "candidates_per_class": 20, "max_detections": 8}
        data |= {"outputs": ["scores", "boxes"], "postprocess": {"nms": "runner", **postprocess}}
        export_onnx(FakeDetectorOutputs(), path, data["outputs"], size, batch)
    else:
        module = {"detect": FakeDetector, "segment": FakeSegmenter, "classify": FakeClassifier}[task]()
        export_onnx(module, path, data["outputs"], size, batch)
    return add_metadata(path, data), data


def plain_classifier(path: Path) -> Path:
    """An ONNX classifier without our metadata (float input, as any exported network)."""
    module = nn.Sequential(nn.Flatten(), nn.Linear(3 * SIZE * SIZE, 4)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(1, 3, SIZE, SIZE),), str(path), input_names=["images"], dynamo=False)
    return path


# Runs in a child process: OpenVINO in the test process breaks its later fork()s (tests/conftest.py, own_process).
TO_OPENVINO = """
import sys, onnx, openvino as ov
key, *paths = sys.argv[1:]
for source, target in zip(paths[::2], paths[1::2]):
    text = {p.key: p.value for p in onnx.load(source).metadata_props}.get(key)
    model = ov.convert_model(source)
    if text is not None:
        model.set_rt_info(text, [key])
    ov.save_model(model, target)
"""


def to_openvino(*pairs: tuple[Path, Path]) -> None:
    """Each (ONNX file, .xml path) converted to OpenVINO IR, its metadata moved into the IR's rt_info (as
    `deploy.runtimes.openvino` writes it), in one child process."""
    command = [sys.executable, "-c", TO_OPENVINO, KEY, *(str(path) for pair in pairs for path in pair)]
    subprocess.run(command, check=True, capture_output=True, timeout=120)


# A Python prelude that makes torch, torchvision and our packages that import them unimportable, then runs the
# statements that follow it (`run_without_torch`: `python -m deploy.run` with the remaining arguments).
BLOCKED = ("torch", "torchvision", "tasks", "backbones", "heads", "deploy.runtimes")
WITHOUT_TORCH = f"""
import runpy, sys
from importlib.abc import MetaPathFinder

class Blocked(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == blocked or name.startswith(blocked + ".") for blocked in {BLOCKED!r}):
            raise ImportError(f"{{name}} is blocked: deploy.run must not import it")
        return None

sys.meta_path.insert(0, Blocked())
"""
RUN_MODULE = """
sys.argv = ["deploy.run", *sys.argv[1:]]
runpy.run_module("deploy.run", run_name="__main__", alter_sys=True)
"""


def run_without_torch(
    *arguments: str | Path, code: str = RUN_MODULE, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """`code` (default: `python -m deploy.run ARGUMENTS...`) in a child process where `BLOCKED` cannot be imported."""
    root = Path(__file__).resolve().parents[2]
    command = [sys.executable, "-c", WITHOUT_TORCH + code, *map(str, arguments)]
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(command, cwd=cwd or root, env=env, capture_output=True, text=True, timeout=120)
