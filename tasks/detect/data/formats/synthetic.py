"""The "synthetic" detection format: shapes generated once into the cache (tasks/detect/data/synthetic.py) in
the COCO layout, then read as "coco" (class names from its categories)."""

from __future__ import annotations

from tasks.common.formats import synthetic_format
from tasks.detect.data.formats import FORMATS
from tasks.detect.data.formats.coco import COCO_FORMAT
from tasks.detect.data.synthetic import ensure_synthetic_detection

SYNTHETIC_FORMAT = FORMATS.register(synthetic_format(COCO_FORMAT, ensure_synthetic_detection))
