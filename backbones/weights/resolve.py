"""`resolve_weights`: the one resolver every `weights=` argument goes through: a tag of the named-weights registry,
a URL or a local path -> a local file (downloaded, hash checked, into torch's hub cache) and its entry if it has one."""

from __future__ import annotations

import re
from pathlib import Path

from backbones.weights import download
from backbones.weights.registry import WeightsEntry, find_weights, get_weights


def resolve_weights(name: str, weights: str | Path | None) -> tuple[Path | None, WeightsEntry | None]:
    """The local file for `weights` (a registry tag of `name`, a URL, or a local path) and its entry if it has one.

    A tag or a registered URL is downloaded (hash checked) into torch's hub cache, or taken from it; any other URL is
    downloaded there too, checked against the hash prefix in its file name when it has one; a path is used as it is.
    """
    if weights is None:
        return None, None
    entry = find_weights(name, weights)
    if entry is not None:
        return download.download_weights(entry), entry
    text = str(weights)
    if re.match(r"^(https?|file)://", text):
        return download.download_url(text), None
    if Path(text).is_file():
        return Path(text), None
    if isinstance(weights, Path) or "/" in text or "\\" in text or Path(text).suffix:
        raise FileNotFoundError(f"weights file not found: {text}")
    get_weights(name, text)  # raises: an unknown tag, naming the valid ones
    raise AssertionError("unreachable")
