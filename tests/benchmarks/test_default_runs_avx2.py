"""The AVX2 default runs really hold torch's kernels to AVX2 in the processes they start."""

from __future__ import annotations

import pytest

from benchmarks.default_runs_avx2 import AVX2_KERNELS, reported_capability


def test_a_new_process_under_the_caps_reports_avx2(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in AVX2_KERNELS.items():
        monkeypatch.setenv(key, value)
    assert reported_capability() == "AVX2"
