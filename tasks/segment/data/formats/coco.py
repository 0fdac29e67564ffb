"""COCO instances as masks of the 20 VOC classes (as torchvision's segmentation reference), and the "coco" format.

Items, mask values and the bad-sample policy: see tasks/segment/data/masks.py. The VOC-category annotations are
kept in a cached index of flat arrays (tasks/common/index_cache.py), not as JSON objects: polygons as float32
coordinates with offsets per polygon and per annotation, compressed RLE strings as bytes; each item is rasterised
when read, through pycocotools as before.

Polygon coordinates are snapped to the 1/5 px grid that pycocotools rasterises on (its rleFrPoly keeps only
`(int)(5 * x + 0.5)` of each coordinate), at the middle of each grid cell, so float32 loses nothing: the masks are
bit-identical to rasterising the file's own float64 coordinates. Segmentations outside that form (uncompressed
RLE, degenerate or invalid polygons) are kept as their JSON bytes and read as before.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from tasks.common.categories import VOC_CLASS_NAMES
from tasks.common.coco import coco_tables, parse_json, read_coco_json
from tasks.common.coco_layout import CocoSource, coco_source
from tasks.common.formats import DataFormat, fixed_class_names
from tasks.common.images import load_rgb, size_mismatch_message
from tasks.common.index_cache import Arrays, Meta, StringArray, cached_index, offsets_of
from tasks.common.splits import HeldOutSplit
from tasks.segment.data.formats import FORMATS
from tasks.segment.data.masks import COCO_VOC_CATEGORY_IDS, InvalidMaskError, SegmentationDataset
from tasks.segment.data.transforms import IGNORE_INDEX

logger = logging.getLogger(__name__)
# The reference's _coco_remove_images_without_annotations: a training image is kept when the `area` of its
# VOC-category annotations sums to more than this many pixels.
MIN_ANNOTATED_AREA = 1000.0
# The cached index of a COCO file's VOC-category annotations; bump the version when its arrays change.
SEGMENTATION_INDEX = "voc-segmentation"
SEGMENTATION_INDEX_VERSION = 1
# How each annotation's `segmentation` is kept in the index.
POLYGONS, COMPRESSED_RLE, RAW_JSON = 0, 1, 2
POLYGON_GRID = 5.0  # pycocotools' rleFrPoly quantises coordinates to 1/5 px
MAX_SNAPPED_COORDINATE = 1e5  # float32 holds the middle of a 1/5 px cell exactly enough up to here


# -- COCO as VOC classes -------------------------------------------------------------------------------------------


def decode_rle(rle: Any) -> np.ndarray:
    """pycocotools' `mask.decode`. Under numpy 2 it warns about its own `__array__` on every call, which a user
    cannot act on: that one DeprecationWarning is silenced here, unless the user set `-W` / PYTHONWARNINGS."""
    if sys.warnoptions or os.environ.get("PYTHONWARNINGS"):
        return mask_utils.decode(rle)
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"__array__ implementation doesn't accept", category=DeprecationWarning
        )
        return mask_utils.decode(rle)


def instance_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """One annotation's `segmentation` (polygons, uncompressed or compressed RLE) as a uint8 0/1 mask [H, W].

    As the reference's convert_coco_poly_to_mask: frPyObjects, decode, union of the parts.
    """
    if isinstance(segmentation, list) and not segmentation:
        return np.zeros((height, width), dtype=np.uint8)
    if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), str):
        rle: Any = {"size": segmentation["size"], "counts": segmentation["counts"].encode()}  # compressed RLE
    else:
        rle = mask_utils.frPyObjects(segmentation, height, width)
    decoded = decode_rle(rle)
    if decoded.ndim < 3:
        decoded = decoded[..., None]
    if decoded.shape[:2] != (height, width):
        raise ValueError(f"its RLE is {decoded.shape[1]}x{decoded.shape[0]}, the image {width}x{height}")
    return decoded.any(axis=2).astype(np.uint8)


def coco_semantic_mask(
    annotations: Sequence[Mapping[str, Any]],
    height: int,
    width: int,
    category_to_label: Mapping[int, int],
    source: str = "annotations",
) -> np.ndarray:
    """Merge instance annotations into one uint8 label mask [H, W], exactly as torchvision's reference.

    references/segmentation/coco_utils.py (FilterAndRemapCocoCategories + ConvertCocoPolysToMask): keep the
    annotations of mapped categories (crowd ones included), `target = (masks * cats[:, None, None]).max(0)`,
    then `target[masks.sum(0) > 1] = 255`: every pixel covered by two or more instances, of the same class or
    not, becomes ignore. Unmapped categories are background.
    """
    kept = [a for a in annotations if a["category_id"] in category_to_label]
    if not kept:
        return np.zeros((height, width), dtype=np.uint8)
    masks = []
    for annotation in kept:
        try:
            masks.append(instance_mask(annotation["segmentation"], height, width))
        except Exception as error:  # pycocotools raises a bare Exception for unsupported input
            raise InvalidMaskError(
                f"{source}: annotation {annotation.get('id')} has an unreadable 'segmentation' "
                f"(valid: polygons [[x, y, ...], ...] or RLE {{'size', 'counts'}}): {error}"
            ) from error
    stacked = np.stack(masks)
    labels = np.array([category_to_label[a["category_id"]] for a in kept], dtype=np.uint8)
    target = (stacked * labels[:, None, None]).max(axis=0)
    target[stacked.sum(axis=0, dtype=np.int64) > 1] = IGNORE_INDEX
    return target


def annotated_area(annotations: Iterable[Mapping[str, Any]], image_info: Mapping[str, Any]) -> float:
    """Sum of the annotations' `area` (decoded from `segmentation` where `area` is absent)."""
    total = 0.0
    for annotation in annotations:
        if "area" in annotation:
            total += float(annotation["area"])
        else:
            total += float(instance_mask(annotation["segmentation"], image_info["height"], image_info["width"]).sum())
    return total


def snap_to_polygon_grid(coordinates: np.ndarray) -> np.ndarray:
    """float32 coordinates that pycocotools quantises exactly as the float64 `coordinates`: each becomes the middle
    of its 1/5 px cell, q / 5 for q = (int)(5 x + 0.5) > 0 and (q - 1) / 5 for q <= 0 (C's cast truncates towards
    zero), so 5 v + 0.5 lies half a cell from either rounding boundary, far beyond float32's error."""
    quantised = np.trunc(POLYGON_GRID * np.asarray(coordinates, dtype=np.float64) + 0.5)
    return (np.where(quantised > 0, quantised, quantised - 1.0) / POLYGON_GRID).astype(np.float32)


def _is_plain_polygons(segmentation: Any) -> bool:
    """Polygons pycocotools reads as polygons (`frPyObjects`' list branch: the first has more than 4 numbers), each
    of at least 3 points; anything else is kept as JSON."""
    return (
        isinstance(segmentation, list)
        and bool(segmentation)
        and all(isinstance(p, list) and len(p) >= 6 for p in segmentation)
    )


def _is_compressed_rle(segmentation: Any) -> bool:
    if not isinstance(segmentation, dict) or not isinstance(segmentation.get("counts"), str):
        return False
    size = segmentation.get("size")
    return isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v >= 0 for v in size)


def _encode_segmentations(segmentations: list[Any]) -> Arrays:
    """The index arrays of K annotations' `segmentation`s (see the module docstring)."""
    import json

    kinds = np.full(len(segmentations), RAW_JSON, dtype=np.uint8)
    polygon_counts = np.zeros(len(segmentations), dtype=np.int64)
    polygons: list[list[Any]] = []
    for index, segmentation in enumerate(segmentations):
        if _is_plain_polygons(segmentation):
            kinds[index] = POLYGONS
            polygon_counts[index] = len(segmentation)
            polygons.extend(segmentation)
        elif _is_compressed_rle(segmentation):
            kinds[index] = COMPRESSED_RLE
    lengths = np.array([len(p) for p in polygons], dtype=np.int64)
    try:
        coordinates = np.array(list(itertools.chain.from_iterable(polygons)), dtype=np.float64)
        finite = np.isfinite(coordinates) & (np.abs(coordinates) < MAX_SNAPPED_COORDINATE)
    except (TypeError, ValueError):  # a non-number somewhere: find the annotations, keep them as JSON
        coordinates, finite = None, None
    if coordinates is None or not finite.all():
        first = 0
        keep_polygons = np.ones(len(polygons), dtype=bool)
        for index in np.flatnonzero(kinds == POLYGONS):
            count = int(polygon_counts[index])
            try:
                values = np.array(list(itertools.chain.from_iterable(polygons[first : first + count])), np.float64)
                ok = bool((np.isfinite(values) & (np.abs(values) < MAX_SNAPPED_COORDINATE)).all())
            except (TypeError, ValueError):
                ok = False
            if not ok:
                kinds[index] = RAW_JSON
                polygon_counts[index] = 0
                keep_polygons[first : first + count] = False
            first += count
        polygons = [p for p, keep in zip(polygons, keep_polygons, strict=True) if keep]
        lengths = lengths[keep_polygons]
        coordinates = np.array(list(itertools.chain.from_iterable(polygons)), dtype=np.float64)
    blobs: list[bytes] = []
    sizes = np.zeros((len(segmentations), 2), dtype=np.int64)
    for index, segmentation in enumerate(segmentations):
        if kinds[index] == COMPRESSED_RLE:
            blobs.append(segmentation["counts"].encode())
            sizes[index] = segmentation["size"]
        elif kinds[index] == RAW_JSON:
            blobs.append(json.dumps(segmentation).encode())
        else:
            blobs.append(b"")
    return {
        "kinds": kinds,
        "polygon_offsets": offsets_of(polygon_counts),
        "coordinate_offsets": offsets_of(lengths),
        "coordinates": snap_to_polygon_grid(coordinates.reshape(-1)),
        "blob_offsets": offsets_of([len(b) for b in blobs]),
        "blobs": np.frombuffer(b"".join(blobs), dtype=np.uint8) if blobs else np.zeros(0, np.uint8),
        "rle_sizes": sizes,
    }


def build_segmentation_index(annotation_file: Path) -> tuple[Arrays, Meta]:
    """The images (sorted by id) and their VOC-category annotations of a COCO file, in flat arrays: per image the
    range of its annotations (file order), per annotation its id, category id, `area` (NaN when absent) and
    segmentation. Errors: see CocoSegmentation."""
    document = read_coco_json(annotation_file)
    tables = coco_tables(document, annotation_file)
    del document
    order = tables.annotation_order
    voc = np.isin(tables.annotation_category_ids[order], np.array(COCO_VOC_CATEGORY_IDS[1:], dtype=np.int64))
    kept = order[voc]
    annotations = [tables.annotations[i] for i in kept]
    counts = np.diff(tables.image_starts)
    image_of = np.repeat(np.arange(len(counts)), counts)[voc]
    ids = [a.get("id") for a in annotations]
    arrays = {
        **tables.image_arrays(),
        "annotation_offsets": offsets_of(np.bincount(image_of, minlength=len(counts))),
        "annotation_ids": np.array([i if isinstance(i, int) else -1 for i in ids], dtype=np.int64),
        "category_ids": tables.annotation_category_ids[kept],
        "areas": np.array([float(a["area"]) if "area" in a else np.nan for a in annotations], dtype=np.float64),
        **_encode_segmentations([a.get("segmentation") for a in annotations]),
    }
    return arrays, {}


class CocoSegmentation(SegmentationDataset):
    """A COCO split (annotations/instances_<split>.json, images in <split>/, or the file and folder `source` names:
    tasks/common/coco_layout.py, with its held-out part) as masks of the 20 VOC classes.

    With `remove_images_without_annotations` (training), images whose VOC-category annotations cover
    `min_annotated_area` pixels or less (by their `area`) are left out, as the reference does; the number is in
    `removed_images` and logged. Evaluation keeps every image. An empty or invalid annotation file, an
    annotation whose category_id or image_id the file does not list, or an image without width/height is a
    ValueError naming the file (and the id) at construction, whatever `skip_bad_samples`; an image whose size
    differs from its `width`/`height` is a bad sample (InvalidMaskError). The annotations are read from a cached
    index of the file (in `cache_dir`, default the suite's cache folder).
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        transform: Any,
        remove_images_without_annotations: bool = False,
        min_annotated_area: float = MIN_ANNOTATED_AREA,
        skip_bad_samples: bool = False,
        cache_dir: str | Path | None = None,
        source: CocoSource | None = None,
    ) -> None:
        super().__init__(VOC_CLASS_NAMES, transform, skip_bad_samples)
        self.root = Path(root)
        self.split = split
        source = source if source is not None else CocoSource.of_split(root, split)
        self.annotation_file = source.annotation_file
        self.index, _ = cached_index(
            self.annotation_file,
            SEGMENTATION_INDEX,
            SEGMENTATION_INDEX_VERSION,
            lambda: build_segmentation_index(self.annotation_file),
            cache_dir,
        )
        self.paths = StringArray(self.index["path_data"], self.index["path_offsets"])
        self.category_to_label = {cid: label for label, cid in enumerate(COCO_VOC_CATEGORY_IDS) if label > 0}
        positions = np.arange(len(self.index["image_ids"]), dtype=np.int64)
        used = source.used(len(positions))
        self.held_out: HeldOutSplit | None = None
        if used is not None:
            positions = positions[used]
            if source.part == "val":
                names = [self.paths[int(i)] for i in positions]
                self.held_out = HeldOutSplit(str(self.annotation_file), names, int((~used).sum()), source.val_fraction)
        self.removed_images = 0
        if remove_images_without_annotations:
            kept = positions[[self._annotated_area(int(i)) > min_annotated_area for i in positions]]
            self.removed_images = len(positions) - len(kept)
            logger.info(
                "%s: left out %d of %d images whose VOC-category annotations cover <= %g px",
                self.annotation_file,
                self.removed_images,
                len(positions),
                min_annotated_area,
            )
            positions = kept
        if not len(positions):
            raise ValueError(f"{self.annotation_file}: no images to use (removed_images={self.removed_images})")
        self.positions = positions  # int64 positions of the used images in the index
        self.image_folder = source.image_folder(self.paths[int(positions[0])])

    @property
    def image_ids(self) -> list[int]:
        return self.index["image_ids"][self.positions].tolist()

    def _annotated_area(self, position: int) -> float:
        """Sum of the image's VOC-category annotations' `area` (decoded from `segmentation` where absent)."""
        start, end = self.index["annotation_offsets"][position : position + 2]
        areas = self.index["areas"][start:end].tolist()
        if not any(np.isnan(areas)):
            return sum(areas)
        height, width = int(self.index["heights"][position]), int(self.index["widths"][position])
        return annotated_area(self._voc_annotations(position), {"height": height, "width": width})

    def _segmentation(self, annotation: int) -> Any:
        """One annotation's `segmentation` as the JSON held it (polygons snapped, see the module docstring)."""
        index = self.index
        kind = int(index["kinds"][annotation])
        if kind == POLYGONS:
            first, last = index["polygon_offsets"][annotation : annotation + 2]
            bounds = index["coordinate_offsets"][first : last + 1]
            coordinates = index["coordinates"]
            return [coordinates[a:b].astype(np.float64).tolist() for a, b in itertools.pairwise(bounds)]
        blob = index["blobs"][index["blob_offsets"][annotation] : index["blob_offsets"][annotation + 1]].tobytes()
        if kind == COMPRESSED_RLE:
            return {"size": index["rle_sizes"][annotation].tolist(), "counts": blob.decode()}
        return parse_json(blob)

    def _voc_annotations(self, position: int) -> list[dict[str, Any]]:
        start, end = (int(v) for v in self.index["annotation_offsets"][position : position + 2])
        ids, categories = self.index["annotation_ids"], self.index["category_ids"]
        return [
            {
                "id": int(ids[k]) if ids[k] >= 0 else None,
                "category_id": int(categories[k]),
                "segmentation": self._segmentation(k),
            }
            for k in range(start, end)
        ]

    def __len__(self) -> int:
        return len(self.positions)

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        position = int(self.positions[index])
        image_id = int(self.index["image_ids"][position])
        path = self.image_folder / self.paths[position]
        image = load_rgb(path)
        height, width = int(self.index["heights"][position]), int(self.index["widths"][position])
        source = f"{self.annotation_file} (image id {image_id})"
        if image.shape[:2] != (height, width):
            raise InvalidMaskError(size_mismatch_message(path, image.shape, width, height, source))
        mask = coco_semantic_mask(self._voc_annotations(position), height, width, self.category_to_label, source)
        return image, mask


# -- the "coco" format of the data module ----------------------------------------------------------------------------
def build_coco(data: Any, split: str, transform: Any, train: bool) -> CocoSegmentation:
    """One split; training leaves out the images without VOC-category pixels, as the reference."""
    return CocoSegmentation(
        data.data_root,
        split,
        transform,
        remove_images_without_annotations=train,
        skip_bad_samples=data.skip_bad_samples,
        cache_dir=data.cache_dir,
        source=coco_source(data, split, train),
    )


# COCO's 20 VOC categories become VOC's labels 1..20.
COCO_FORMAT = FORMATS.register(
    DataFormat(name="coco", build=build_coco, class_names=fixed_class_names(VOC_CLASS_NAMES))
)
