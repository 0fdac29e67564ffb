"""The "synthetic" segmentation format: shapes generated once into the cache (tasks/segment/data/synthetic.py) in
the VOC layout, then read as "voc" with the shape classes."""

from __future__ import annotations

from tasks.common.formats import synthetic_format
from tasks.segment.data.formats import FORMATS
from tasks.segment.data.formats.voc import VOC_FORMAT
from tasks.segment.data.synthetic import SEGMENTATION_CLASS_NAMES, ensure_synthetic_segmentation

SYNTHETIC_FORMAT = FORMATS.register(
    synthetic_format(VOC_FORMAT, ensure_synthetic_segmentation, SEGMENTATION_CLASS_NAMES)
)
