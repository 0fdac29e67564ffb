"""A value that the model, the data module or the trainer rejects while the CLI builds them is one `error:` line on
the command line, not a traceback; driven from Python (`main([...])`), the caller gets the rejecting exception."""

from __future__ import annotations

import re
import sys

import pytest

from tasks.detect.task import main

REJECTED = [
    (["--width", "0"], ValueError, "error: width must be positive, got 0.0"),
    (["--model.backbone_options", '{"foo": 1}'], TypeError, "error: backbone 'v3_small' got unknown option(s) ['foo']"),
    (["--data.val_fraction", "2"], ValueError, "error: val_fraction must be in (0, 1), got 2.0"),
]


def fit_arguments(tmp_path, flags: list[str]) -> list[str]:
    # a small synthetic set: the CLI reads its class names (generating it) before building the model
    small = [
        "--data.synthetic_train_images",
        "4",
        "--data.synthetic_val_images",
        "2",
        "--data.synthetic_image_size",
        "64",
    ]
    return ["fit", "--backbone", "v3_small", "--data.cache_dir", str(tmp_path), *small, *flags]


@pytest.mark.parametrize("flags, kind, line", REJECTED)
def test_a_rejected_value_is_one_error_line(tmp_path, monkeypatch, flags, kind, line):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["tasks.detect", *fit_arguments(tmp_path, flags)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    message = str(exit_info.value.code)
    assert message.startswith(line) and "\n" not in message


def test_driven_from_python_the_caller_gets_the_rejecting_exception(tmp_path, monkeypatch):
    flags, kind, line = REJECTED[1]
    monkeypatch.chdir(tmp_path)
    with pytest.raises(kind, match=re.escape(line.removeprefix("error: "))):
        main(fit_arguments(tmp_path, flags))
