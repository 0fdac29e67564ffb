"""Category lists shared by the tasks and formats: the background name and the 20 Pascal VOC classes."""

from __future__ import annotations

BACKGROUND = "background"

# The 20 VOC classes in the devkit's order: labels 1..20.
VOC_CLASSES: tuple[str, ...] = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
VOC_CLASS_NAMES: list[str] = [BACKGROUND, *VOC_CLASSES]
