"""`python -m deploy.run MODEL INPUTS... --out DIR`: the files `python -m tasks.<task> predict` writes (byte for byte,
from the tasks' own writers on the same results), videos, a run where torch cannot be imported, and bad inputs: one
message, exit status 2, nothing written."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from deploy.run import load
from deploy.run.__main__ import main
from deploy.run.drawing import palette_mask
from tasks.classify.outputs import ClassificationPredictionWriter
from tasks.detect.outputs import DetectionPredictionWriter
from tasks.segment.outputs import SegmentationPredictionWriter
from tests.deploy.run_models import CATEGORY_IDS, contract_model, plain_classifier, run_without_torch
from tests.helpers import read_video, write_video

SIZES = [(37, 53), (48, 64), (65, 47)]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {task: contract_model(task, folder / f"{task}.onnx")[0] for task in ("detect", "segment", "classify")}


@pytest.fixture
def images(tmp_path) -> Path:
    """A folder of three noise PNGs, one bright (the fake detector finds 3 there, 1 elsewhere)."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index, size in enumerate(SIZES):
        pixels = rng.integers(0, 120, (*size, 3), dtype=np.uint8) + np.uint8(120 * (index == 1))
        Image.fromarray(pixels).save(folder / f"img{index}.png")
    return folder


def task_writer_files(task: str, model: Path, images: Path, out: Path) -> None:
    """What the task's own `predict` writer writes for the runner's results of `images` (as tensors)."""
    runner = load(model)
    results = [
        {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in result.items()}
        for result in runner(images)
    ]
    names = runner.class_names
    if task == "detect":
        trainer = SimpleNamespace(datamodule=SimpleNamespace(label_to_category_id=dict(enumerate(CATEGORY_IDS))))
        DetectionPredictionWriter(str(out), names).write_on_epoch_end(trainer, None, [results], None)
    elif task == "segment":
        SegmentationPredictionWriter(str(out), names).write_on_batch_end(None, None, results)
    else:
        writer = ClassificationPredictionWriter(str(out), names)
        writer.on_predict_start(None, None)
        writer.write_on_batch_end(None, None, results, None, None, 0, 0)


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("task", ["detect", "segment", "classify"])
def test_cli_writes_what_predict_writes(models, images, tmp_path, task, capsys):
    assert main([str(models[task]), str(images), "--out", str(tmp_path / "out"), "--batch_size", "2"]) == 0
    task_writer_files(task, models[task], images, tmp_path / "want")
    ours, want = files(tmp_path / "out"), files(tmp_path / "want")
    assert ours == want
    expected = {
        "detect": {"img0.jpg", "img1.jpg", "img2.jpg", "detections.json"},
        "segment": {f"img{i}_{kind}" for i in range(3) for kind in ("mask.png", "overlay.jpg")},
        "classify": {"predictions.csv"},
    }
    assert set(ours) == expected[task]
    printed = capsys.readouterr().out
    assert f"deploy.run: {task} model fake_{task} from {models[task]} (onnxruntime)" in printed
    assert "3 images" in printed and str(tmp_path / "out") in printed and "img1.png" in printed
    if task == "detect":
        records = json.loads(ours["detections.json"])
        assert len(records) == 5 and {r["category_id"] for r in records} == {17, 16, 18}  # 1 + 3 + 1, COCO's ids
        assert "3 images: 5 detections, 3 drawn (score >= 0.3) -> " in printed


@pytest.mark.parametrize("task", ["detect", "segment", "classify"])
def test_cli_on_a_video(models, tmp_path, task, capsys):
    video = write_video(tmp_path / "clip.mp4", frames=5)
    out = tmp_path / "out"
    assert main([str(models[task]), str(video), "--out", str(out), "--batch_size", "2", "--threads", "1"]) == 0
    frames = [cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) for frame in read_video(video)]
    results = load(models[task]).predict_arrays(frames)
    copy = read_video(out / "clip.mp4")
    assert len(copy) == 5 and copy[0].shape == frames[0].shape
    if task == "detect":
        records = json.loads((out / "clip_detections.json").read_text())
        assert [r["frame"] for r in records] == [i for i, r in enumerate(results) for _ in r["labels"]]
        assert [r["score"] for r in records] == [s for r in results for s in r["scores"].tolist()]
        assert records[0]["time"] == 0.0 and records[-1]["time"] == pytest.approx(4 / 5.0)
    elif task == "segment":
        for index, result in enumerate(results):
            with Image.open(out / "clip_masks" / f"{index:06d}.png") as mask:
                assert np.array_equal(np.asarray(mask), np.asarray(palette_mask(result["mask"])))
    else:
        with (out / "clip_predictions.csv").open() as file:
            rows = list(csv.reader(file))
        assert rows[0][:4] == ["frame", "time", "class_1", "score_1"] and len(rows) == 6
        assert [row[2] for row in rows[1:]] == [result["names"][0] for result in results]
    assert "clip.mp4: 5 frames" in capsys.readouterr().out


def test_cli_without_torch(models, images, tmp_path):
    """The CLI in a process where torch, torchvision, tasks, backbones, heads and deploy.runtimes cannot be imported:
    it runs and writes its files."""
    video = write_video(tmp_path / "clip.mp4", frames=3)
    out = tmp_path / "out"
    result = run_without_torch(models["detect"], images, video, "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert {p.name for p in out.iterdir()} == {
        "img0.jpg",
        "img1.jpg",
        "img2.jpg",
        "detections.json",
        "clip.mp4",
        "clip_detections.json",
    }
    assert "3 images and 1 video: 5 detections, 3 drawn (score >= 0.3)" in result.stdout


def test_every_module_imports_without_torch():
    """Every module of deploy.run, the OpenVINO backend too, imports where torch and our torch packages cannot."""
    code = """
import pkgutil, importlib, deploy.run
names = [m.name for m in pkgutil.iter_modules(deploy.run.__path__) if m.name != "__main__"]
for name in names:
    importlib.import_module("deploy.run." + name)
import deploy.run.__main__
assert "torch" not in sys.modules, "torch was imported"
print(len(names))
"""
    result = run_without_torch(code=code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout) >= 15


def bad_case(case: str, models: dict[str, Path], images: Path, tmp_path: Path) -> tuple[list[str], str]:
    """The arguments of a run with one bad input, and what its message must say."""
    model, inputs = str(models["detect"]), [str(images)]
    if case == "plain_model":
        model, message = str(plain_classifier(tmp_path / "plain.onnx")), "plain.onnx: no 'mobilenet_suite' metadata"
    elif case == "missing_model":
        model, message = str(tmp_path / "gone.onnx"), "gone.onnx: no such file; export one with"
    elif case == "corrupt_model":
        (tmp_path / "cut.onnx").write_bytes(models["detect"].read_bytes()[:100])  # OpenVINO's: test_run_openvino.py
        model, message = str(tmp_path / "cut.onnx"), "cut.onnx: onnxruntime cannot read it"
    elif case == "undecodable_image":  # after a good image: only the staging folder has seen it
        (images / "img9.png").write_bytes(b"\x89PNG\r\n broken")
        message = "img9.png cannot be decoded"
    elif case == "missing_image":
        inputs.append(str(tmp_path / "nowhere.jpg"))
        message = "nowhere.jpg: no such file or folder"
    elif case == "unopenable_video":
        (tmp_path / "broken.mp4").write_bytes(b"not a video")
        inputs.append(str(tmp_path / "broken.mp4"))
        message = "broken.mp4: OpenCV cannot open it"
    elif case == "same_names":
        other = tmp_path / "other"
        other.mkdir()
        (other / "img0.png").write_bytes((images / "img0.png").read_bytes())
        inputs.append(str(other))
        message = "img0.png would both write img0.jpg; rename one"
    else:  # out_is_a_file
        message = "is a file, not a folder"
    return [model, *inputs], message


BAD_CASES = [
    "plain_model",
    "missing_model",
    "corrupt_model",
    "undecodable_image",
    "missing_image",
    "unopenable_video",
    "same_names",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_one_message_nothing_written(models, images, tmp_path, case, capsys):
    arguments, message = bad_case(case, models, images, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier.txt").write_text("from an earlier run")
    assert main([*arguments, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert captured.err.startswith("deploy.run: error: ") and message in captured.err
    assert files(out) == {"earlier.txt": b"from an earlier run"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.tmp")]  # no staging folder left


def test_out_that_is_a_file(models, images, tmp_path, capsys):
    (tmp_path / "out").write_text("a file")
    assert main([str(models["detect"]), str(images), "--out", str(tmp_path / "out")]) == 2
    assert "--out " in capsys.readouterr().err and (tmp_path / "out").read_text() == "a file"


def test_bad_input_without_torch(tmp_path):
    """The message and exit status in a process of its own, where no torch could print a traceback either."""
    model = plain_classifier(tmp_path / "plain.onnx")
    result = run_without_torch(model, tmp_path, "--out", tmp_path / "out")
    assert result.returncode == 2 and result.stdout == "" and "Traceback" not in result.stderr
    assert "plain.onnx: no 'mobilenet_suite' metadata" in result.stderr and not (tmp_path / "out").exists()
