"""OpenVINO: `export --format openvino` through the task CLI, the IR against the folded model, and NNCF int8 scored
by the same evaluation code as the ONNX int8 path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from deploy.metadata import KEY, decode
from deploy.runtimes import get_runtime
from deploy.runtimes.base import FixedBatch
from tasks.classify.task import main as classify_main
from tasks.common.end_to_end import PixelInput
from tasks.common.export import exportable_model
from tasks.common.int8 import int8_formats, quantizer
from tasks.common.task_checkpoint import load_task
from tasks.detect.exported import FLOAT_SCOPES, detections_from_outputs
from tests.deploy.conftest import INT8_FOUND, found_fraction, missing_packages
from tests.helpers import SIZE, tiny_task, with_measured_statistics, write_checkpoint

# OpenVINO/NNCF in the test process break later forks; a process each makes these the slow tier's. Skipped only
# where openvino or nncf is absent: an installed one that fails to import fails the tests.
pytestmark = [
    pytest.mark.own_process,
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(missing_packages("openvino", "nncf")),
        reason="openvino or nncf is not installed: pip install -e '.[openvino]'",
    ),
]


@pytest.fixture(scope="module")
def classify_ckpt(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("openvino")
    module, data = tiny_task("classify", folder / "cache")
    return write_checkpoint(folder / "classify.ckpt", module, data)


def test_cli_int8_writes_an_int8_ir_and_prints_the_agreement(classify_ckpt, tmp_path, capsys):
    output = tmp_path / "model.openvino.xml"
    argv = ["export", "--ckpt_path", str(classify_ckpt), "--format", "openvino", "--output", str(output), "--int8"]
    result = classify_main([*argv, "--calibration_batches", "2", "--calibration_batch_size", "4"])
    int8 = tmp_path / "model.int8.openvino.xml"
    assert result.path == int8 and int8.is_file() and result.fp32.path == output
    assert "FakeQuantize" in int8.read_text() and "FakeQuantize" not in output.read_text()
    figures = result.figures
    assert figures["calibration_images"] == 8 and figures["val_images"] == 8
    assert 0.0 <= figures["top1_agreement"] <= 1.0 and {"fp32/top1", "int8/top1"} <= set(figures)
    printed = capsys.readouterr().out
    assert "top1_agreement" in printed
    # the fp32 IR first, checked by the OpenVINO runtime, with its metadata
    assert output.with_suffix(".bin").is_file() and result.fp32.format == "openvino"
    assert "check (openvino CPU, f32)" in printed and "difference probabilities" in printed
    assert result.fp32.max_abs_diff["probabilities"] <= result.fp32.tolerance["probabilities"]
    import openvino

    metadata = decode(openvino.Core().read_model(str(output)).get_rt_info([KEY]).astype(str), output)
    assert metadata["task"] == "classify" and metadata["input"]["dtype"] == "uint8"
    # the fp32 file equals the folded model on fresh pixels too, run by openvino itself
    checkpoint = load_task("classify", classify_ckpt)
    model = exportable_model("classify", checkpoint.module, SIZE)
    pixels = torch.randint(0, 256, (1, 3, SIZE, SIZE), dtype=torch.uint8)
    data = checkpoint.datamodule()
    mean, std = torch.tensor(data.mean)[:, None, None], torch.tensor(data.std)[:, None, None]
    (got,) = get_runtime("openvino").load(output).run(pixels)
    with torch.inference_mode():
        want = model((pixels / 255 - mean) / std).softmax(1)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0, atol=1e-5)
    # the agreement is what the two files, run on the val images, say
    data.setup("validate")
    fp32, quantized = (
        PixelInput(FixedBatch(get_runtime("openvino").load(p), 1), data.mean, data.std) for p in (output, int8)
    )
    predictions = {"fp32": [], "int8": []}
    for images, _ in data.val_dataloader():
        predictions["fp32"].append(fp32.run(images)[0].argmax(1))
        predictions["int8"].append(quantized.run(images)[0].argmax(1))
    agree = float((torch.cat(predictions["fp32"]) == torch.cat(predictions["int8"])).float().mean())
    assert figures["top1_agreement"] == pytest.approx(agree)


@pytest.mark.slow  # NNCF on the detector takes 30-80 s on 2 busy cores
def test_int8_ir_tracks_fp32_and_keeps_the_decoding_float(tmp_path):
    """NNCF int8 IR of a detector whose detections depend on the image (`with_measured_statistics`), calibrated on 6
    train images: its decoding has no FakeQuantize, its softmax runs in float, and it finds most of the float model's
    best detections of 12 images (`found_fraction`, `INT8_FOUND` in tests/deploy/conftest.py)."""
    torch.manual_seed(0)
    module, data = tiny_task("detect", tmp_path / "cache")
    data.setup("fit")
    train, val = (data.build_dataset(split, train=False) for split in (data.train_split, data.val_split))
    train_images = torch.stack([train[i][0] for i in range(len(train))])
    with_measured_statistics(module.model, train_images)
    images = torch.cat([torch.stack([val[i][0] for i in range(len(val))]), train_images])
    model = exportable_model("detect", module.eval(), SIZE)
    batches = [train_images[:3].numpy(), train_images[3:6].numpy()]
    fp32 = tmp_path / "d.openvino.xml"
    get_runtime("openvino").export(model, torch.from_numpy(batches[0]), fp32, ("scores", "boxes"), True)
    int8 = quantizer("openvino")(model, fp32, tmp_path / "d.int8.openvino.xml", batches, FLOAT_SCOPES)
    text = int8.read_text()
    assert "FakeQuantize" in text
    import openvino

    ir = openvino.Core().read_model(str(int8))
    decode = [op for op in ir.get_ordered_ops() if "/decode/" in op.get_friendly_name()]
    assert decode and not any(
        input.get_source_output().get_node().get_type_name() == "FakeQuantize" for op in decode for input in op.inputs()
    )
    scores, boxes = get_runtime("openvino").load(int8).run(images)
    with torch.inference_mode():
        want_scores, want_boxes = model(images)
    assert scores.shape == want_scores.shape and boxes.shape == want_boxes.shape
    assert float((scores.sum(-1) - 1).abs().max()) < 1e-4  # the softmax ran in float
    have, want = (detections_from_outputs(module.model, *out) for out in ((scores, boxes), (want_scores, want_boxes)))
    assert len(images) == 12 and len({d["scores"][:20].numpy().tobytes() for d in want}) == 12  # each image its own
    assert not torch.equal(scores, want_scores)  # int8 kernels ran
    assert found_fraction(want, have, top=20, among=40, min_iou=0.8) >= INT8_FOUND


def test_formats_with_int8_and_an_unsupported_one(classify_ckpt, capsys):
    assert {"onnx", "openvino"} <= set(int8_formats()) and "torchscript" not in int8_formats()
    with pytest.raises(SystemExit):
        classify_main(["export", "--ckpt_path", str(classify_ckpt), "--format", "torchscript", "--int8"])
    assert "--int8 is not supported with --format torchscript; formats with int8: [" in capsys.readouterr().err


def test_missing_ir_weights_name_both_files(tmp_path):
    (tmp_path / "m.openvino.xml").write_text("<net/>")
    with pytest.raises(FileNotFoundError, match=r"m\.openvino\.xml: an OpenVINO IR needs both .* m\.openvino\.bin"):
        get_runtime("openvino").load(tmp_path / "m.openvino.xml")
