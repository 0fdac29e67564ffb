"""MkDocs hook: tables that code knows are generated at build time, not pasted into the pages.

A page line `<!-- generated: NAME -->` (alone on its line) is replaced by the Markdown that `GENERATORS[NAME]()`
returns; an unknown name fails the build. Each generator imports what it reads inside one small function, so a
module that moves is a one-line change here. Benchmark figures are not generated: the pages include the files the
benchmark scripts write (`benchmarks/results/*.md`) with pymdownx.snippets.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

ROOT = Path(__file__).resolve().parent.parent

MARKER = re.compile(r"^<!-- generated: (?P<name>[\w-]+) -->$", re.MULTILINE)


# -- where each table's facts live (one import each) ----------------------------------------------------------------
def weights_entries_table() -> str:
    """What `python -m tasks.weights` prints: every named-weights entry with its parameter count."""
    from backbones.weights import list_weights
    from tasks.weights import table

    return table(list_weights())


def bad_input_cases() -> Any:
    """The module whose `MATRIX` maps (format, case) to the documented behaviour, asserted case by case."""
    from tests.tasks.common import test_bad_input_battery

    return test_bad_input_battery


def profile_module() -> Any:
    """The module that counts parameters and multiply-adds beside the papers' figures."""
    from backbones import profile

    return profile


# -- generators -----------------------------------------------------------------------------------------------------
FORMAT_NAMES = {
    "coco": "COCO detection",
    "voc": "VOC detection",
    "voc_seg": "VOC segmentation",
    "coco_seg": "COCO segmentation",
    "imagefolder": "imagefolder",
}
CASE_NAMES = {
    "zero_byte_image": "zero-byte image",
    "truncated_jpeg": "truncated JPEG",
    "missing_image": "annotation names a missing image",
    "png16_gray": "16-bit grayscale PNG",
    "png16_rgb": "16-bit RGB PNG",
    "cmyk_jpeg": "CMYK JPEG",
    "grayscale": "grayscale JPEG",
    "rgba": "RGBA PNG",
    "exif_rotated": "EXIF-rotated JPEG, annotated in the displayed frame",
    "exif_stored_size": "EXIF-rotated JPEG, annotation gives the stored size",
    "unknown_category": "unknown category",
    "negative_box": "negative box",
    "zero_size_box": "zero-size box",
    "box_outside": "box outside the image",
    "no_size": "image size missing",
    "empty_annotation_file": "empty annotation file",
    "mask_wrong_size": "mask of the wrong size",
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def bad_input_matrix() -> str:
    """Input (rows) by reader (columns): what the user gets, from the battery's MATRIX. The three behaviours many
    cells share (SKIP, DROPPED, LOADS) are written as their names, explained under the table."""
    battery = bad_input_cases()
    matrix: dict[tuple[str, str], str] = battery.MATRIX
    shared = {"error/skip": battery.SKIP, "dropped": battery.DROPPED, "loads": battery.LOADS}
    formats = list(dict.fromkeys(f for f, _ in matrix))
    cases = list(dict.fromkeys(c for _, c in matrix))

    def cell(format: str, case: str) -> str:
        text = matrix.get((format, case))
        if text is None:
            return "—"
        for name, phrase in shared.items():
            text = text.replace(phrase, f"**{name}**")
        return _cell(text)

    rows = ["| input | " + " | ".join(FORMAT_NAMES.get(f, f) for f in formats) + " |"]
    rows.append("|---" * (len(formats) + 1) + "|")
    for case in cases:
        label = CASE_NAMES.get(case, case.replace("_", " "))
        rows.append(f"| {label} | " + " | ".join(cell(f, case) for f in formats) + " |")
    legend = [""] + [f"- **{name}**: {_cell(phrase)}" for name, phrase in shared.items()]
    return "\n".join(rows + legend)


def profile_table() -> str:
    """Parameters and multiply-adds of each classifier counted from the modules, beside the papers' figures."""
    profile = profile_module()
    rows = [
        "| backbone | width | input | parameters | paper | MAdds | paper | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for figure in profile.PAPER_FIGURES:
        row = profile.profile_row(figure)
        paper_params = "-" if figure.params_m is None else f"{figure.params_m:.1f}M"
        rows.append(
            f"| {figure.name} | {figure.width:.2f} | {figure.resolution} | {row['params_m']:.2f}M | {paper_params} "
            f"| {row['madds_m']:.1f}M | {figure.madds_m:.0f}M | {figure.note} |"
        )
    return "\n".join(rows)


GENERATORS: dict[str, Callable[[], str]] = {
    "weights_table": weights_entries_table,
    "bad_input_matrix": bad_input_matrix,
    "profile_table": profile_table,
}


@functools.cache
def generated(name: str) -> str:
    if str(ROOT) not in sys.path:  # the project's packages, and tests/ (the bad-input matrix); MkDocs restores
        sys.path.insert(0, str(ROOT))  # sys.path after loading this file, so this happens at generation time
    if name not in GENERATORS:
        raise PluginError(f"docs/hooks.py: unknown table <!-- generated: {name} -->; known: {sorted(GENERATORS)}")
    return GENERATORS[name]()


def expand(markdown: str, where: str = "a page") -> str:
    """`markdown` with every marker line replaced by its generated table."""
    try:
        return MARKER.sub(lambda match: generated(match["name"]), markdown)
    except PluginError:
        raise
    except Exception as error:  # a broken import or generator fails the build with the page that asked for it
        raise PluginError(f"docs/hooks.py: generating a table for {where} failed: {error!r}") from error


def on_pre_build(config: Any) -> None:
    generated.cache_clear()  # `mkdocs serve` rebuilds in one process: tables follow the code


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    return expand(markdown, page.file.src_path)
