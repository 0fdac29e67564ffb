"""The runner on OpenVINO IR files: the contract models converted from ONNX give the ONNX files' outputs (run in
child processes where torch cannot be imported: OpenVINO in the test process breaks its later forks), refused IRs,
and, in the slow tier, real end-to-end OpenVINO exports against the Python predictors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deploy.run.__main__ import main
from tests.deploy import test_run_parity
from tests.deploy.conftest import missing_packages
from tests.deploy.run_models import contract_model, plain_classifier, run_without_torch, to_openvino

# the slow tier's: converting the models takes 5 s; the fast tier runs the runner on ONNX files (test_run_parity)
pytestmark = [
    pytest.mark.skipif(
        bool(missing_packages("openvino")), reason="openvino is not installed: pip install -e .[openvino]"
    ),
    pytest.mark.slow,
]
TASKS = ("detect", "segment", "classify")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """The contract models as ONNX (`<task>.onnx`) and as IR (`<task>.xml`), and an IR without metadata (`plain`)."""
    folder = tmp_path_factory.mktemp("models")
    found = {task: contract_model(task, folder / f"{task}.onnx")[0] for task in TASKS}
    found["plain.onnx"] = plain_classifier(folder / "plain.onnx")
    pairs = [(found[task], folder / f"{task}.xml") for task in TASKS] + [(found["plain.onnx"], folder / "plain.xml")]
    to_openvino(*pairs)
    return found | {f"{task}.xml": folder / f"{task}.xml" for task in TASKS} | {"plain": folder / "plain.xml"}


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index, size in enumerate([(37, 53), (48, 64), (65, 47)]):
        pixels = rng.integers(0, 120, (*size, 3), dtype=np.uint8) + np.uint8(120 * (index == 1))
        Image.fromarray(pixels).save(folder / f"img{index}.png")
    return folder


@pytest.mark.parametrize("task", TASKS)
def test_openvino_files_give_the_onnx_results(models, images, tmp_path, task):
    result = run_without_torch(models[f"{task}.xml"], images, "--out", tmp_path / "ov", "--threads", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(openvino, 1 thread)" in result.stdout
    assert main([str(models[task]), str(images), "--out", str(tmp_path / "onnx")]) == 0
    ours = {p.name for p in (tmp_path / "ov").iterdir()}
    assert ours == {p.name for p in (tmp_path / "onnx").iterdir()}
    if task == "detect":
        got, want = (json.loads((tmp_path / kind / "detections.json").read_text()) for kind in ("ov", "onnx"))
        assert len(got) == len(want) == 5
        for mine, theirs in zip(got, want, strict=True):
            assert mine["category_id"] == theirs["category_id"] and mine["file_name"] == theirs["file_name"]
            # float32 means summed in another order: scores within 1e-4, as the parity tests allow
            np.testing.assert_allclose(mine["bbox"] + [mine["score"]], theirs["bbox"] + [theirs["score"]], atol=1e-4)
    elif task == "segment":
        for name in ours:
            if name.endswith("_mask.png"):
                assert (tmp_path / "ov" / name).read_bytes() == (tmp_path / "onnx" / name).read_bytes()
    else:
        got, want = (list(csv.reader((tmp_path / kind / "predictions.csv").open())) for kind in ("ov", "onnx"))
        assert [row[:2] for row in got] == [row[:2] for row in want] and len(got) == 4
        np.testing.assert_allclose([float(row[2]) for row in got[1:]], [float(row[2]) for row in want[1:]], atol=1e-4)


def test_refused_openvino_files(models, images, tmp_path):
    """An IR without our metadata, one whose weights file is gone, XML that is no IR: one message each, exit
    status 2 (where no OpenVINO frontend gets to print its own)."""
    result = run_without_torch(models["plain"], images, "--out", tmp_path / "out")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "plain.xml: no 'mobilenet_suite' metadata" in result.stderr
    lonely = tmp_path / "lonely.xml"
    lonely.write_bytes(models["detect.xml"].read_bytes())  # without its .bin
    result = run_without_torch(lonely, images, "--out", tmp_path / "out")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "lonely.xml: openvino cannot read it (Empty weights data" in result.stderr
    assert not (tmp_path / "out").exists()
    (tmp_path / "notes.xml").write_text("<notes>not a network</notes>")
    result = run_without_torch(tmp_path / "notes.xml", images, "--out", tmp_path / "out")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "notes.xml: not an OpenVINO IR (its root is <notes>, not <net>)" in result.stderr


@pytest.mark.slow
@pytest.mark.own_process
def test_openvino_exports_equal_the_predictors(tmp_path):
    """`export --format openvino` end-to-end files of each task give the predictors' results: the ONNX parity tests
    on OpenVINO files, in a process of their own (the marker)."""
    for check in (
        test_run_parity.test_detections_equal_the_predictors,
        test_run_parity.test_masks_equal_the_predictors,
        test_run_parity.test_top_classes_equal_the_predictors,
    ):
        folder = tmp_path / check.__name__
        folder.mkdir()
        if check is test_run_parity.test_detections_equal_the_predictors:
            check(folder, letterbox=True, format="openvino")
        else:
            check(folder, format="openvino")
