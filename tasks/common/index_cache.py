"""A compact index of an annotation file, built once and cached as numpy arrays in one memory-mapped file.

Parsing a train2017-sized JSON (~500 MB) takes tens of seconds and gigabytes of Python objects; every DDP rank and
every set-up would pay it again. `cached_index` builds the flat arrays of one annotation file once (`build()`)
and writes them into the cache folder (`default_cache_dir()/indices`, or `cache_dir`), keyed by the file's
resolved path, size and mtime and by the index `kind` (and its `version`); a later call whose key matches maps the
arrays read-only (`np.memmap`) instead of parsing. Forked DataLoader workers share those pages with the parent
(clean file-backed pages are never copied), and the arrays pickle as their file's path, so spawned workers map
them again rather than copying them.

Concurrency: the builder holds an exclusive `flock` on `<index>.lock` while it builds and publishes the file with an
atomic rename; a process (e.g. another DDP rank on the node) that finds no valid index waits on that lock and then
reads the published file. The OS releases the lock when a builder dies, so nothing can be left locked, and no
collective call is involved (a barrier would hang if only some ranks built a dataset or if the builder raised).
A corrupt or unreadable index file is logged and rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tasks.common.synthetic import default_cache_dir

try:  # POSIX only; elsewhere concurrent builders each build and the last atomic rename wins
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

MAGIC = b"MNSIDX01"
ALIGN = 64
INDEX_FOLDER = "indices"
Arrays = dict[str, np.ndarray]
Meta = dict[str, Any]


def offsets_of(counts: np.ndarray | Sequence[int]) -> np.ndarray:
    """int64 [N + 1] starts of N consecutive runs of `counts` items (0, c0, c0 + c1, ...)."""
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(np.asarray(counts, dtype=np.int64), out=offsets[1:])
    return offsets


class StringArray:
    """N strings in one uint8 buffer of UTF-8 bytes with int64 offsets [N + 1]: no Python object per string."""

    def __init__(self, data: np.ndarray, offsets: np.ndarray) -> None:
        self.data = data
        self.offsets = offsets

    @classmethod
    def from_strings(cls, strings: Sequence[str]) -> StringArray:
        encoded = [s.encode() for s in strings]
        data = np.frombuffer(b"".join(encoded), dtype=np.uint8) if encoded else np.zeros(0, np.uint8)
        return cls(data, offsets_of([len(e) for e in encoded]))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> str:
        return self.data[self.offsets[index] : self.offsets[index + 1]].tobytes().decode()


class CorruptIndexError(ValueError):
    """An index file that is truncated or not an index."""


def annotation_key(annotation_file: str | Path, kind: str, version: int) -> Meta:
    """What an index depends on: the file's resolved path, size and mtime, the index kind and its version."""
    path = Path(annotation_file).resolve()
    stat = path.stat()
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "kind": kind, "version": version}


def index_path(annotation_file: str | Path, kind: str, cache_dir: str | Path | None = None) -> Path:
    """`<cache>/indices/<file stem>-<kind>-<hash of the resolved path>.idx`: one file per annotation file and kind."""
    path = Path(annotation_file).resolve()
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:16]
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return cache / INDEX_FOLDER / f"{path.stem}-{kind}-{digest}.idx"


def write_index(path: Path, arrays: Arrays, meta: Meta) -> None:
    """Write `arrays` (C-contiguous copies) and the JSON `meta` into `path` atomically (temporary file + rename)."""
    header: dict[str, Any] = {"meta": meta, "arrays": {}}
    offset = 0
    prepared = {}
    for name, array in arrays.items():
        array = np.ascontiguousarray(array)
        prepared[name] = array
        header["arrays"][name] = {"dtype": array.dtype.str, "shape": list(array.shape), "offset": offset}
        offset += -(-array.nbytes // ALIGN) * ALIGN
    header["data_bytes"] = offset
    encoded = json.dumps(header).encode()
    start = -(-(len(MAGIC) + 8 + len(encoded)) // ALIGN) * ALIGN
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        os.fchmod(handle, 0o644)  # mkstemp's 0600 would hide a shared cache from other users' ranks
        with os.fdopen(handle, "wb") as out:
            out.write(MAGIC + len(encoded).to_bytes(8, "little") + encoded)
            out.write(b"\0" * (start - out.tell()))
            for name, array in prepared.items():
                out.seek(start + header["arrays"][name]["offset"])
                out.write(memoryview(array.reshape(-1).view(np.uint8)) if array.size else b"")
            out.truncate(start + offset)
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def read_index(path: Path) -> tuple[Arrays, Meta]:
    """The arrays of an index file, memory-mapped read-only, and its meta; CorruptIndexError when it is not one."""
    with open(path, "rb") as handle:
        prefix = handle.read(len(MAGIC) + 8)
        if len(prefix) < len(MAGIC) + 8 or prefix[: len(MAGIC)] != MAGIC:
            raise CorruptIndexError(f"{path} is not an index file (bad magic)")
        length = int.from_bytes(prefix[len(MAGIC) :], "little")
        try:
            header = json.loads(handle.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise CorruptIndexError(f"{path}: unreadable header ({error})") from error
    start = -(-(len(MAGIC) + 8 + length) // ALIGN) * ALIGN
    size = path.stat().st_size
    if not isinstance(header, dict) or size != start + header.get("data_bytes", -1):
        raise CorruptIndexError(f"{path} is {size} bytes, its header says {start + header.get('data_bytes', 0)}")
    arrays: Arrays = {}
    for name, spec in header["arrays"].items():
        shape = tuple(spec["shape"])
        if int(np.prod(shape)) == 0:
            arrays[name] = np.empty(shape, dtype=np.dtype(spec["dtype"]))
        else:
            arrays[name] = IndexArray.open(path, spec["dtype"], shape, start + spec["offset"])
    return arrays, header["meta"]


class IndexArray(np.memmap):
    """A read-only memory-mapped array of an index file that pickles as (file, dtype, shape, offset), so a spawned
    DataLoader worker maps the file again instead of receiving a copy."""

    @classmethod
    def open(cls, path: Path, dtype: str, shape: tuple[int, ...], offset: int) -> IndexArray:
        array = cls(path, dtype=np.dtype(dtype), mode="r", offset=offset, shape=shape)
        array._source = (str(path), dtype, shape, offset)
        return array

    def __reduce__(self) -> Any:
        source = getattr(self, "_source", None)
        if source is None or self.base is None:
            return np.asarray(self).copy().__reduce__()
        return (_reopen, source)


def _reopen(path: str, dtype: str, shape: tuple[int, ...], offset: int) -> IndexArray:
    return IndexArray.open(Path(path), dtype, shape, offset)


def _header_meta(path: Path) -> Meta:
    """The meta of an index file, reading its header only."""
    with open(path, "rb") as handle:
        prefix = handle.read(len(MAGIC) + 8)
        if prefix[: len(MAGIC)] != MAGIC:
            raise CorruptIndexError(f"{path} is not an index file (bad magic)")
        return json.loads(handle.read(int.from_bytes(prefix[len(MAGIC) :], "little")))["meta"]


def remove_orphans(folder: Path) -> int:
    """Delete the indices (and their lock files) in `folder` whose annotation file no longer exists, so that a cache
    shared by many datasets over time holds only live ones; returns how many were deleted (logged)."""
    removed = 0
    for index in folder.glob("*.idx"):
        try:
            source = _header_meta(index)["key"]["path"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # unreadable or being written: left to the reader that needs it
        if not Path(source).exists():
            for stale in (index, index.with_suffix(".lock")):
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()
            removed += 1
    if removed:
        logger.info("removed %d cached indices of annotation files that no longer exist from %s", removed, folder)
    return removed


@contextlib.contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive flock on `lock_file` (created if needed); without fcntl or on a file system that refuses
    locks, no lock (concurrent builders then each build, and the atomic rename keeps the file whole)."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a+b") as handle:
        locked = False
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
                locked = True
            except OSError as error:
                logger.debug("no lock on %s (%s); building without one", lock_file, error)
        try:
            yield
        finally:
            if locked:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _load_if_valid(path: Path, key: Meta) -> tuple[Arrays, Meta] | None:
    """The index at `path` when it exists and was built from the file `key` describes; None otherwise (a corrupt
    file is logged, then rebuilt by the caller)."""
    if not path.is_file():
        return None
    try:
        arrays, meta = read_index(path)
    except (CorruptIndexError, OSError, ValueError, KeyError, TypeError) as error:
        logger.warning("index cache %s is corrupt or unreadable (%s); rebuilding it", path, error)
        return None
    if meta.get("key") != key:
        logger.info("index cache %s is for another version of %s; rebuilding it", path, key["path"])
        return None
    return arrays, meta


def cached_index(
    annotation_file: str | Path,
    kind: str,
    version: int,
    build: Callable[[], tuple[Arrays, Meta]],
    cache_dir: str | Path | None = None,
) -> tuple[Arrays, Meta]:
    """The index of `annotation_file` of this `kind`: read from the cache when its key (path, size, mtime, kind,
    version) matches, else `build()` (arrays and a JSON-able meta) under the lock, written, then read back mapped.

    An error raised by `build` (a bad annotation file) propagates and nothing is cached. When the cache folder
    cannot be written, the built arrays are returned in memory with a warning.
    """
    key = annotation_key(annotation_file, kind, version)
    path = index_path(annotation_file, kind, cache_dir)
    found = _load_if_valid(path, key)
    if found is not None:
        return found
    try:
        lock = _locked(path.with_suffix(".lock"))
        lock.__enter__()
    except OSError as error:
        logger.warning("cannot use the index cache %s (%s); building in memory", path.parent, error)
        arrays, meta = build()
        return arrays, meta
    try:
        found = _load_if_valid(path, key)  # another process may have built it while we waited for the lock
        if found is not None:
            return found
        arrays, meta = build()
        meta = {**meta, "key": key}
        try:
            write_index(path, arrays, meta)
        except OSError as error:
            logger.warning("cannot write the index cache %s (%s); using the index in memory", path, error)
            return arrays, meta
        logger.info("wrote the index of %s to %s", annotation_file, path)
        remove_orphans(path.parent)
        return read_index(path)
    finally:
        lock.__exit__(None, None, None)
