"""The "synthetic" classification format: 8 shape x colour classes generated once into the cache
(tasks/classify/data/synthetic.py) in the ImageNet layout, then read as "imagefolder" with fixed class names (known
without generating the data)."""

from __future__ import annotations

from tasks.classify.data.formats import FORMATS
from tasks.classify.data.formats.imagefolder import IMAGEFOLDER_FORMAT
from tasks.classify.data.synthetic import CLASSIFICATION_CLASS_NAMES, ensure_synthetic_classification
from tasks.common.formats import synthetic_format

SYNTHETIC_FORMAT = FORMATS.register(
    synthetic_format(IMAGEFOLDER_FORMAT, ensure_synthetic_classification, CLASSIFICATION_CLASS_NAMES)
)
