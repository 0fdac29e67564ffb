"""The classification dataset formats, one module each, registered by name in FORMATS (see
tasks/common/datamodule.py)."""

from __future__ import annotations

from tasks.common.datamodule import DataFormat, FormatRegistry

FORMATS: FormatRegistry[DataFormat] = FormatRegistry("classification", __name__)
