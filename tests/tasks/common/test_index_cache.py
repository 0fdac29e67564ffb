"""The annotation index cache: round trip, memory mapping, keying on the file, corrupt files, concurrent builders."""

from __future__ import annotations

import logging
import os
import pickle
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tasks.common.index_cache import IndexArray, cached_index, index_path, read_index, write_index

ARRAYS = {
    "ids": np.arange(5, dtype=np.int64),
    "boxes": np.random.default_rng(0).random((7, 4)).astype(np.float32),
    "flags": np.array([True, False, True]),
    "empty": np.zeros((0, 4), dtype=np.float32),
    "text": np.frombuffer("héllo".encode(), dtype=np.uint8),
}


class Builder:
    """A build() that counts its calls."""

    def __init__(self, arrays: dict[str, np.ndarray] = ARRAYS, delay: float = 0.0) -> None:
        self.arrays, self.delay, self.calls = arrays, delay, 0

    def __call__(self) -> tuple[dict[str, np.ndarray], dict]:
        self.calls += 1
        time.sleep(self.delay)
        return dict(self.arrays), {"note": "meta survives"}


def assert_same(arrays: dict[str, np.ndarray]) -> None:
    assert set(arrays) == set(ARRAYS)
    for name, expected in ARRAYS.items():
        assert arrays[name].dtype == expected.dtype and arrays[name].shape == expected.shape, name
        np.testing.assert_array_equal(arrays[name], expected)


@pytest.fixture
def annotation_file(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "instances_train.json"
    path.parent.mkdir()
    path.write_text('{"images": []}')
    return path


def test_round_trip_is_memory_mapped_and_pickles_as_its_file(tmp_path: Path) -> None:
    path = tmp_path / "x.idx"
    write_index(path, ARRAYS, {"a": [1, 2]})
    arrays, meta = read_index(path)
    assert_same(arrays)
    assert meta == {"a": [1, 2]}
    assert isinstance(arrays["boxes"], IndexArray) and not arrays["boxes"].flags.writeable
    pickled = pickle.dumps(arrays["boxes"])
    assert b"x.idx" in pickled and len(pickled) < 400  # the file's name and offset, not the data
    np.testing.assert_array_equal(pickle.loads(pickled), ARRAYS["boxes"])
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(arrays["boxes"][2:4])), ARRAYS["boxes"][2:4])


def test_second_call_reads_the_cache(annotation_file: Path, tmp_path: Path) -> None:
    build = Builder()
    first, meta = cached_index(annotation_file, "detection", 1, build, tmp_path / "cache")
    second, meta2 = cached_index(annotation_file, "detection", 1, build, tmp_path / "cache")
    assert build.calls == 1
    assert_same(first)
    assert_same(second)
    assert meta["note"] == meta2["note"] == "meta survives"
    assert index_path(annotation_file, "detection", tmp_path / "cache").is_file()
    cached_index(annotation_file, "detection", 2, build, tmp_path / "cache")  # a new index version
    cached_index(annotation_file, "segmentation", 2, build, tmp_path / "cache")  # another kind, its own file
    assert build.calls == 3


def test_a_changed_file_is_rebuilt(annotation_file: Path, tmp_path: Path) -> None:
    build = Builder()
    cached_index(annotation_file, "detection", 1, build, tmp_path / "cache")
    annotation_file.write_text('{"images": [] }')  # another size
    cached_index(annotation_file, "detection", 1, build, tmp_path / "cache")
    assert build.calls == 2
    stat = annotation_file.stat()
    os.utime(annotation_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # same size, new mtime
    cached_index(annotation_file, "detection", 1, build, tmp_path / "cache")
    assert build.calls == 3
    cached_index(annotation_file, "detection", 1, build, tmp_path / "cache")
    assert build.calls == 3


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_a_corrupt_cache_file_is_rebuilt_with_a_message(
    annotation_file: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    build = Builder()
    cached_index(annotation_file, "detection", 1, build, tmp_path / "cache")
    path = index_path(annotation_file, "detection", tmp_path / "cache")
    content = path.read_bytes()
    path.write_bytes({"garbage": b"not an index" * 10, "truncated": content[:-40], "empty": b""}[damage])
    with caplog.at_level(logging.WARNING, logger="tasks.common.index_cache"):
        arrays, _ = cached_index(annotation_file, "detection", 1, build, tmp_path / "cache")
    assert build.calls == 2
    assert_same(arrays)
    assert any("corrupt" in r.getMessage() and str(path) in r.getMessage() for r in caplog.records)
    assert path.read_bytes() == content


def test_a_failed_build_propagates_and_caches_nothing(annotation_file: Path, tmp_path: Path) -> None:
    def broken() -> tuple[dict[str, np.ndarray], dict]:
        raise ValueError(f"{annotation_file}: bad annotation")

    with pytest.raises(ValueError, match="bad annotation"):
        cached_index(annotation_file, "detection", 1, broken, tmp_path / "cache")
    assert not index_path(annotation_file, "detection", tmp_path / "cache").exists()
    assert [p.name for p in (tmp_path / "cache" / "indices").iterdir() if not p.name.endswith(".lock")] == []


def test_concurrent_callers_build_once(annotation_file: Path, tmp_path: Path) -> None:
    build = Builder(delay=0.3)
    results: list[dict[str, np.ndarray]] = []

    def call() -> None:
        results.append(cached_index(annotation_file, "detection", 1, build, tmp_path / "cache")[0])

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert build.calls == 1 and len(results) == 3
    for arrays in results:
        assert_same(arrays)


def test_an_unwritable_cache_folder_still_gives_the_index(
    annotation_file: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING, logger="tasks.common.index_cache"):
        arrays, _ = cached_index(annotation_file, "detection", 1, Builder(), blocker)
    assert_same(arrays)
    assert any("building in memory" in r.getMessage() for r in caplog.records)


def test_indices_of_deleted_annotation_files_are_removed_when_a_new_one_is_written(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    files = []
    for name in ("a", "b", "c"):
        path = tmp_path / name / "instances_train.json"
        path.parent.mkdir()
        path.write_text('{"images": []}')
        files.append(path)
    cached_index(files[0], "detection", 1, Builder(), cache)
    cached_index(files[1], "detection", 1, Builder(), cache)
    files[0].unlink()
    (cache / "indices" / "not-an-index.idx").write_bytes(b"junk")  # unreadable files are left alone
    cached_index(files[2], "detection", 1, Builder(), cache)
    left = sorted(p.name for p in (cache / "indices").glob("*.idx"))
    assert left == sorted([index_path(f, "detection", cache).name for f in files[1:]] + ["not-an-index.idx"])
    assert not index_path(files[0], "detection", cache).with_suffix(".lock").exists()
