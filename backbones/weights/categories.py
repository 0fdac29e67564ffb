"""The category lists that published weights are trained on: ImageNet-1k and COCO's 91 (with torchvision's "N/A"
slots, so that label i is COCO category id i) from torchvision's weights meta, and Pascal VOC's 21 with the
background first, named as the tasks name them (`tasks/common/categories.py`; backbones never import tasks)."""

from __future__ import annotations

from torchvision.models._meta import _COCO_CATEGORIES, _IMAGENET_CATEGORIES

IMAGENET_CATEGORIES: tuple[str, ...] = tuple(_IMAGENET_CATEGORIES)
COCO_CATEGORIES: tuple[str, ...] = tuple(_COCO_CATEGORIES)
VOC_CATEGORIES: tuple[str, ...] = (
    "background",
    *"aeroplane bicycle bird boat bottle bus car cat chair cow diningtable dog horse motorbike person pottedplant "
    "sheep sofa train tvmonitor".split(),
)
