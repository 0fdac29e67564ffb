"""The segmentation dataset formats, one module each, registered by name in FORMATS (see tasks/common/formats.py)."""

from __future__ import annotations

from tasks.common.formats import DataFormat, FormatRegistry

FORMATS: FormatRegistry[DataFormat] = FormatRegistry("segmentation", __name__)
