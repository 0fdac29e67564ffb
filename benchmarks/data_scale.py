"""Detection data at COCO train2017 scale: set-up time, memory growth, DataLoader workers' private memory, images/s.

    python -m benchmarks.data_scale [--root DIR] [--images 118287] [--instances 862677] [--batches 1200]

Writes a train2017-sized annotation file (118,287 images, ~862k instances with polygons, ~500 MB, by a streaming
writer) and a val2017-sized one (5,000 images), images hard-linked to a few real JPEGs (seconds of disk), under a
temporary folder (or `--root`, kept with `--keep`), then measures, each set-up in a fresh process:

- set-up (first): `DetectionDataModule(format="coco").setup("fit")` plus the val split's `coco_gt` (validation
  reads it), with an empty cache folder; the process's RSS growth over it (psutil);
- set-up (cached): the same in a new process, the index cache now written;
- the DataLoader's 2 workers' private memory (psutil `memory_full_info().uss`, summed; the median over batches 6-10
  and over the last 5) after 10 batches and after `--batches` batches of 32 at 320 px, and images/s between them.

Goals (issue 14): cached set-up <= 5 s; first <= 35 s; growth from set-up <= 600 MB; workers' growth from
batch 10 to 1,200 <= 50 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.results import recorded

TRAIN_IMAGES = 118_287
TRAIN_INSTANCES = 862_677
VAL_IMAGES = 5_000
CATEGORY_IDS = [*range(1, 12), *range(13, 26), 27, 28, *range(31, 45), *range(46, 66), 67, 70, *range(72, 83)]
CATEGORY_IDS += [84, 85, 86, 87, 88, 89, 90]  # COCO's 80 category ids (1..90 with gaps)
SIZES = ((640, 480), (480, 640), (640, 427), (500, 375))  # the few real photos' sizes (W, H)
CHUNK = 20_000
MB = 1024 * 1024


def write_photos(folder: Path) -> list[Path]:
    """A few real JPEGs (smooth gradients plus noise, so they compress like photos), one per size in SIZES."""
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, (width, height) in enumerate(SIZES):
        y, x = np.mgrid[0:height, 0:width]
        base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], axis=-1)
        pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
        path = folder / f"photo_{index}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


def write_split(root: Path, split: str, num_images: int, num_instances: int, photos: list[Path], seed: int) -> int:
    """Write annotations/instances_<split>.json with a streaming writer and hard-link root/<split>/<file> to the
    photos; returns the JSON's size in bytes."""
    import orjson

    rng = np.random.default_rng(seed)
    images_folder = root / split
    images_folder.mkdir(parents=True, exist_ok=True)
    which = rng.integers(0, len(photos), num_images)
    per_image = rng.multinomial(num_instances, np.full(num_images, 1.0 / num_images))
    path = root / "annotations" / f"instances_{split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        out.write(b'{"info": {"description": "data_scale benchmark"}, "licenses": [], "images": [')
        for start in range(0, num_images, CHUNK):
            rows = []
            for index in range(start, min(start + CHUNK, num_images)):
                width, height = SIZES[which[index]]
                file_name = f"{index + 1:012d}.jpg"
                os.link(photos[which[index]], images_folder / file_name)
                rows.append({"id": index + 1, "file_name": file_name, "width": width, "height": height})
            out.write((b"," if start else b"") + orjson.dumps(rows)[1:-1])
        out.write(b'], "annotations": [')
        image_of = np.repeat(np.arange(num_images), per_image)
        for start in range(0, num_instances, CHUNK):
            images = image_of[start : start + CHUNK]
            count = len(images)
            sides = np.array([SIZES[i] for i in which[images]], dtype=np.float64).reshape(-1, 2)
            wh = rng.uniform(4, sides / 2)
            xy = rng.uniform(0, sides - wh)
            points = rng.integers(10, 56, count)
            angles = np.sort(rng.uniform(0, 2 * np.pi, (count, 56)), axis=1)
            px = np.round(xy[:, :1] + wh[:, :1] / 2 * (1 + np.cos(angles)), 2)
            py = np.round(xy[:, 1:] + wh[:, 1:] / 2 * (1 + np.sin(angles)), 2)
            polygons = np.stack([px, py], axis=2).reshape(count, -1)
            boxes = np.round(np.concatenate([xy, wh], axis=1), 2).tolist()
            areas = np.round(wh.prod(axis=1) * 0.78, 2).tolist()
            categories = rng.integers(0, len(CATEGORY_IDS), count)
            crowd = rng.random(count) < 0.01
            rows = [
                {
                    "id": start + k + 1,
                    "image_id": int(images[k]) + 1,
                    "category_id": CATEGORY_IDS[categories[k]],
                    "segmentation": [polygons[k, : 2 * points[k]].tolist()],
                    "area": areas[k],
                    "bbox": boxes[k],
                    "iscrowd": int(crowd[k]),
                }
                for k in range(count)
            ]
            out.write((b"," if start else b"") + orjson.dumps(rows)[1:-1])
        categories = [{"id": c, "name": f"category_{c}", "supercategory": "thing"} for c in CATEGORY_IDS]
        out.write(b'], "categories": ' + orjson.dumps(categories) + b"}")
    return path.stat().st_size


def rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def workers_uss() -> list[int]:
    import psutil

    return [child.memory_full_info().uss for child in psutil.Process().children(recursive=True)]


def measure(root: Path, cache: Path, batches: int, batch_size: int, workers: int, image_size: int) -> dict:
    """One fresh process's set-up (time, RSS growth) and, with batches > 0, its loader's figures."""
    import torch

    from tasks.detect.data.module import DetectionDataModule

    torch.set_num_threads(1)
    before = rss()
    start = time.perf_counter()
    data = DetectionDataModule(
        format="coco",
        root=str(root),
        train_split="train",
        val_split="val",
        image_size=image_size,
        batch_size=batch_size,
        num_workers=workers,
        cache_dir=str(cache),
    )
    data.setup("fit")
    _ = data.val_dataset.coco_gt  # validation reads it
    result = {
        "setup_s": time.perf_counter() - start,
        "growth_mb": (rss() - before) / MB,
        "images": len(data.train_dataset),
    }
    if batches:
        iterator = iter(data.train_dataloader())

        def workers_uss_over(count: int) -> float:
            """The median of the workers' summed USS after each of the next `count` batches: one sample would
            depend on whether a worker holds a finished batch (32 x 3 x 320 x 320 float32 = 39 MB) just then."""
            samples = []
            for _ in range(count):
                next(iterator)
                samples.append(sum(workers_uss()) / MB)
            return float(np.median(samples))

        for _ in range(5):
            next(iterator)
        result["uss_10_mb"] = workers_uss_over(5)  # batches 6-10
        start = time.perf_counter()
        for _ in range(batches - 15):
            next(iterator)
        elapsed = time.perf_counter() - start
        result["uss_end_mb"] = workers_uss_over(5)  # the last 5
        result["images_per_s"] = (batches - 15) * batch_size / elapsed
        del iterator
    return result


def run_child(args: argparse.Namespace, root: Path, cache: Path, batches: int) -> dict:
    command = [
        sys.executable,
        "-m",
        "benchmarks.data_scale",
        "--child",
        "--root",
        str(root),
        "--cache",
        str(cache),
        "--batches",
        str(batches),
        "--batch-size",
        str(args.batch_size),
        "--workers",
        str(args.workers),
        "--image-size",
        str(args.image_size),
    ]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=None, help="where to write the data (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep --root's data afterwards")
    parser.add_argument("--images", type=int, default=TRAIN_IMAGES)
    parser.add_argument("--instances", type=int, default=TRAIN_INSTANCES)
    parser.add_argument("--batches", type=int, default=1200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=320)
    parser.add_argument("--cache", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = measure(args.root, args.cache, args.batches, args.batch_size, args.workers, args.image_size)
        print(json.dumps(result))
        return
    temporary = args.root is None
    root = Path(tempfile.mkdtemp(prefix="data_scale-")) if temporary else args.root
    try:
        dataset = root / "coco"
        start = time.perf_counter()
        if not (dataset / "annotations" / "instances_train.json").is_file():
            photos = write_photos(root / "photos")
            size = write_split(dataset, "train", args.images, args.instances, photos, seed=0)
            write_split(dataset, "val", VAL_IMAGES, VAL_IMAGES * args.instances // args.images, photos, seed=1)
            print(
                f"wrote {args.images} images, {args.instances} instances, {size / MB:.0f} MB JSON under {dataset} "
                f"in {time.perf_counter() - start:.0f} s"
            )
        cache = root / "cache"
        shutil.rmtree(cache, ignore_errors=True)
        first = run_child(args, dataset, cache, batches=0)
        cached = run_child(args, dataset, cache, batches=args.batches)
        rows = [
            ("set-up, first (s)", f"{first['setup_s']:.1f}", "<= 35"),
            ("set-up, cached (s)", f"{cached['setup_s']:.1f}", "<= 5"),
            ("RSS growth from set-up, first (MB)", f"{first['growth_mb']:.0f}", "<= 600"),
            ("RSS growth from set-up, cached (MB)", f"{cached['growth_mb']:.0f}", "<= 600"),
            (f"workers' USS after 10 batches (MB, {args.workers} workers)", f"{cached['uss_10_mb']:.0f}", ""),
            (f"workers' USS after {args.batches} batches (MB)", f"{cached['uss_end_mb']:.0f}", ""),
            ("workers' USS growth (MB)", f"{cached['uss_end_mb'] - cached['uss_10_mb']:.0f}", "<= 50"),
            (f"images/s ({args.batch_size} x {args.image_size} px)", f"{cached['images_per_s']:.0f}", ""),
        ]
        with recorded(__file__, argv):
            print(f"{cached['images']} training images, batches of {args.batch_size}, {args.workers} workers")
            width = max(len(name) for name, _, _ in rows)
            print(f"{'measure':<{width}}  {'value':>8}  goal")
            for name, value, goal in rows:
                print(f"{name:<{width}}  {value:>8}  {goal}")
    finally:
        if temporary or not args.keep:
            shutil.rmtree(root / "coco" if not temporary else root, ignore_errors=True)
            shutil.rmtree(root / "cache", ignore_errors=True)
            shutil.rmtree(root / "photos", ignore_errors=True)


if __name__ == "__main__":
    main()
