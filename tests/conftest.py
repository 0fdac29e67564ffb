"""Shared fixtures; shared helper functions live in tests/helpers.py."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

OWN_PROCESS_ENV = "MOBILENET_SUITE_TEST_CHILD"
# The registry-parametrised tests of the four largest members (10-38M parameters) run in the slow tier, to keep the
# fast tier within its 3 minutes; it keeps v4_conv_small, and tests the Mobile MQA block against timm's on its own
# (tests/backbones/test_attention.py).
SLOW_TIER_BACKBONES = re.compile(r"v4_(conv_medium|conv_large|hybrid_medium|hybrid_large)")


# each worker imports torch, Lightning and the runtimes, and the docs' blocks start processes of their own
MAX_TEST_WORKERS = 8


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """pytest-xdist's `-n auto` (pyproject's addopts): a worker per logical CPU, at most MAX_TEST_WORKERS."""
    return min(os.cpu_count() or 1, MAX_TEST_WORKERS)


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist the CPUs are shared out among the workers, so that torch's thread pools, and those of the
    processes tests start, do not oversubscribe them."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = max(1, (os.cpu_count() or 1) // workers)
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_TIER_BACKBONES.search(item.name):  # a parametrised id: "v4_conv_large", "ssdlite320_v4_conv_large", ...
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _run_in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs in its own temporary folder: what a run writes where it stands (Lightning's config.yaml and
    plots under a default root dir, predictions/) never lands in the checkout."""
    monkeypatch.chdir(tmp_path)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Tests marked `own_process` run in a fresh interpreter: OpenVINO/NNCF leave threads behind that make a later
    fork() of the test process (a DataLoader's workers) crash or hang."""
    if pyfuncitem.get_closest_marker("own_process") is None or os.environ.get(OWN_PROCESS_ENV):
        return None
    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", pyfuncitem.nodeid]
    env = {**os.environ, OWN_PROCESS_ENV: "1"}
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        pytest.fail(f"{pyfuncitem.nodeid} failed in its own process:\n{result.stdout[-6000:]}{result.stderr[-2000:]}")
    skipped = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    if skipped:  # a skip in the child is a skip here, not a pass
        pytest.skip(skipped[0].split(": ", 1)[-1])
    return True
