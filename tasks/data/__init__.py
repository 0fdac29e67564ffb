"""Object-detection data: synthetic shapes, COCO and VOC readers, SSD-style transforms, the LightningDataModule.

Item contract (train/val/test): `(image, target)`, image float32 [3, S, S] resized and normalised; target
`boxes` float32 [N, 4] x1 y1 x2 y2 in input pixels, `labels` int64 [N] in 1..K, `image_id` int, `orig_size`
int64 [2] = (H, W) of the original image, `scale` float32 [2] = (sx, sy) with original = input * scale.
Predict items: `(image, meta)` with `path`, `orig_size`, `scale`. Batches: `collate_detection`.
Unreadable images are skipped (the next readable item is returned) and counted in `dataset.skipped_images`.

Semantic segmentation (`SegmentationDataModule`, tasks/data/segmentation.py): items `(image float32 [3, H, W],
mask int64 [H, W])` with labels 0..C-1 and IGNORE_INDEX (255); batches: `collate_segmentation`.
"""

from tasks.data.coco import CocoDetection
from tasks.data.detection import DetectionDataModule, collate_detection
from tasks.data.images import AnnotatedImages, DetectionRecord, PredictImages, UnreadableImageError, load_rgb
from tasks.data.segmentation import SegmentationDataModule, collate_segmentation
from tasks.data.segmentation_datasets import CocoSegmentation, SegmentationPredictImages, VocSegmentation
from tasks.data.segmentation_transforms import IGNORE_INDEX, SegmentationEvalTransform, SegmentationTrainTransform
from tasks.data.synthetic import SHAPE_NAMES, ensure_synthetic_detection
from tasks.data.synthetic_segmentation import SEGMENTATION_CLASS_NAMES, ensure_synthetic_segmentation
from tasks.data.transforms import DetectionTransform, RandomIoUCrop, RandomZoomOut, input_scale
from tasks.data.voc import VOC_CLASSES, VocDetection

__all__ = [
    "IGNORE_INDEX",
    "SEGMENTATION_CLASS_NAMES",
    "SHAPE_NAMES",
    "VOC_CLASSES",
    "AnnotatedImages",
    "CocoDetection",
    "CocoSegmentation",
    "DetectionDataModule",
    "DetectionRecord",
    "DetectionTransform",
    "PredictImages",
    "RandomIoUCrop",
    "RandomZoomOut",
    "SegmentationDataModule",
    "SegmentationEvalTransform",
    "SegmentationPredictImages",
    "SegmentationTrainTransform",
    "UnreadableImageError",
    "VocDetection",
    "VocSegmentation",
    "collate_detection",
    "collate_segmentation",
    "ensure_synthetic_detection",
    "ensure_synthetic_segmentation",
    "input_scale",
    "load_rgb",
]
