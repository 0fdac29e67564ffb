"""The detection dataset formats, one module each, registered by name in FORMATS (see tasks/common/formats.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tasks.common.formats import DataFormat, FormatRegistry


@dataclass(frozen=True, kw_only=True)
class DetectionFormat(DataFormat):
    """A detection format also says how its labels map back to the dataset's category ids (before setup)."""

    label_to_category_id: Callable[[Any], dict[int, int]]


FORMATS: FormatRegistry[DetectionFormat] = FormatRegistry("detection", __name__)
