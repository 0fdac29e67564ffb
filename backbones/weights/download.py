"""Downloads into torch's hub cache (`$TORCH_HOME/hub/checkpoints`, as `torch.hub.load_state_dict_from_url`),
through `torch.hub.download_url_to_file` (with its progress bar), hash checked.

A cached file is used without any network access. A download whose SHA-256 does not match is deleted and the error
names both hashes; one without a published hash (an unverified entry) logs a warning with the hash it has. Without
network the error names the URL and the cache path where the file can be placed by hand, after at most `TIMEOUT_S`
seconds. `MOBILENET_SUITE_WEIGHTS_MIRROR=<base URL>` fetches `<base>/<file name>` instead (air-gapped clusters),
hash still checked.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import torch.hub

from backbones.weights.registry import WeightsEntry

logger = logging.getLogger(__name__)
MIRROR_VARIABLE = "MOBILENET_SUITE_WEIGHTS_MIRROR"
TIMEOUT_S = 10.0
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,64})\.")  # torch.hub's convention: <name>-<sha256 prefix>.<ext>


def cache_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_weights(entry: WeightsEntry, progress: bool = True) -> Path:
    """The entry's file in the cache, downloaded (from the mirror when one is set) and checked if not there yet."""
    if entry.sha256 is None:
        logger.info("%s %r: %s", entry.name, entry.tag, entry.note or "unverified: no hash is published; not checked")
    return fetch(entry.url, entry.cache_name, entry.sha256, progress=progress)


def download_url(url: str, progress: bool = True) -> Path:
    """Any URL into the cache; checked against the hash prefix in its file name when it has one (torch.hub's rule)."""
    name = Path(urlparse(url).path).name
    if not name:
        raise ValueError(f"weights URL {url!r} names no file")
    match = _HASH_IN_NAME.search(name)  # none: downloaded unchecked, with a warning naming the file's hash
    return fetch(url, name, match.group(1) if match else None, progress=progress)


def fetch(url: str, name: str, sha256: str | None, progress: bool = True) -> Path:
    """`name` in the cache: taken as it is when there (hash checked, no network), else downloaded from `url` or from
    the mirror; a mismatching download is deleted."""
    path = cache_dir() / name
    if path.is_file():
        cached = sha256_of(path) if sha256 is not None else ""
        if not cached.startswith(sha256 or ""):
            raise RuntimeError(
                f"{path}: cached weights do not match their hash: expected sha256 {sha256}, the file has {cached}; "
                f"delete the file to download it again"
            )
        return path
    mirror = os.environ.get(MIRROR_VARIABLE)
    source = f"{mirror.rstrip('/')}/{name}" if mirror else url
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        with _socket_timeout(TIMEOUT_S):
            torch.hub.download_url_to_file(source, str(partial), progress=progress)
    except Exception as error:
        partial.unlink(missing_ok=True)
        via = f" (the mirror {MIRROR_VARIABLE}={mirror} for {url})" if mirror else ""
        raise ConnectionError(
            f"cannot download weights from {source}{via}: {error}. Without network, download {source} elsewhere and "
            f"place it at {path}" + (f" (its sha256 starts with {sha256})" if sha256 else "")
        ) from error
    actual = sha256_of(partial)
    if sha256 is not None and not actual.startswith(sha256):
        partial.unlink()
        raise RuntimeError(
            f"weights downloaded from {source} do not match their hash: expected sha256 {sha256}, got {actual}; "
            f"the download was deleted"
        )
    if sha256 is None:
        logger.warning(
            "%s: downloaded from %s without a hash check (none is published); its sha256 is %s: pass it as "
            "register_weights(..., sha256=%r, replace=True) to check this file from now on",
            path, source, actual, actual,
        )  # fmt: skip
    partial.replace(path)
    return path


@contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """`download_url_to_file` opens its URL without a timeout; a default socket timeout keeps it from hanging."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)
