"""The cached index of a COCO file's VOC-category annotations in flat arrays (tasks/common/index_cache.py): how it
is built from the JSON and how one annotation's `segmentation` is read back.

Polygons are kept as float32 coordinates with offsets per polygon and per annotation, compressed RLE strings as
bytes. Polygon coordinates are snapped to the 1/5 px grid that pycocotools rasterises on (its rleFrPoly keeps only
`(int)(5 * x + 0.5)` of each coordinate), at the middle of each grid cell, so float32 loses nothing: the masks are
bit-identical to rasterising the file's own float64 coordinates. Segmentations outside that form (uncompressed
RLE, degenerate or invalid polygons) are kept as their JSON bytes and read back as they were.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np

from tasks.common.coco import coco_tables, parse_json, read_coco_json
from tasks.common.index_cache import Arrays, Meta, offsets_of
from tasks.segment.data.masks import COCO_VOC_CATEGORY_IDS

# The name of the index in the cache; bump the version when its arrays change.
SEGMENTATION_INDEX = "voc-segmentation"
SEGMENTATION_INDEX_VERSION = 1
# How each annotation's `segmentation` is kept in the index.
POLYGONS, COMPRESSED_RLE, RAW_JSON = 0, 1, 2
POLYGON_GRID = 5.0  # pycocotools' rleFrPoly quantises coordinates to 1/5 px
MAX_SNAPPED_COORDINATE = 1e5  # float32 holds the middle of a 1/5 px cell exactly enough up to here


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


def read_segmentation(index: Arrays, annotation: int) -> Any:
    """Annotation `annotation`'s `segmentation` as the JSON held it (polygons snapped, see the module docstring)."""
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


def image_annotations(index: Arrays, position: int) -> list[dict[str, Any]]:
    """The VOC-category annotations of the image at `position` (file order), as the dicts the mask conversion reads:
    `id` (None where the file has none), `category_id` and `segmentation`."""
    start, end = (int(v) for v in index["annotation_offsets"][position : position + 2])
    ids, categories = index["annotation_ids"], index["category_ids"]
    return [
        {
            "id": int(ids[k]) if ids[k] >= 0 else None,
            "category_id": int(categories[k]),
            "segmentation": read_segmentation(index, k),
        }
        for k in range(start, end)
    ]
