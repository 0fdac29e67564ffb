"""`python -m backbones.weights`: the named-weights registry as a Markdown table (parameters counted by building
each entry's architecture)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from torch import nn

from backbones.registry import list_backbones
from backbones.weights.registry import WeightsEntry, list_weights

TASK_HEADS = ("deeplabv3", "lraspp")


def build_model(entry: WeightsEntry) -> nn.Module:
    """The architecture that `entry`'s file loads into, randomly initialised, with the entry's class count."""
    classes = len(entry.categories)
    options = dict(entry.build_options)
    if entry.name in list_backbones():
        from backbones.factory import create_classifier

        return create_classifier(entry.name, classes, **options)
    prefix, _, backbone = entry.name.partition("_")
    if prefix == "ssdlite320":
        from tasks.detect.model import build_detector  # the task models live above backbones; only this CLI needs them

        return build_detector(backbone, classes, **options)
    if prefix in TASK_HEADS:
        from tasks.segment.model import build_segmenter

        return build_segmenter(backbone, prefix, classes, **options)
    raise ValueError(f"{entry.name!r}: no known architecture (a backbone, ssdlite320_<backbone> or <head>_<backbone>)")


def table(entries: Sequence[WeightsEntry]) -> str:
    rows = ["| name | tag | source | parameters | published metric | preprocessing | download check |"]
    rows.append("|---|---|---|---|---|---|---|")
    for entry in entries:
        try:
            params = f"{sum(p.numel() for p in build_model(entry).parameters()):,}"
        except ValueError:
            params = "?"
        tag = entry.tag + "".join(f" (= {alias})" for alias in entry.aliases)
        metric = ", ".join(f"{key} {value:g}" for key, value in entry.metrics.items()) or "-"
        mean, std = (",".join(f"{v:g}" for v in values) for values in (entry.mean, entry.std))
        resize = f"resize {entry.resize_size}, " if entry.resize_size and entry.resize_size != entry.image_size else ""
        size = f"{resize}{entry.image_size} px {entry.interpolation}, mean {mean}, std {std}"
        check = f"sha256 {entry.sha256[:8]}" if entry.verified else "**unverified** (no published hash)"
        rows.append(f"| {entry.name} | {tag} | {entry.source} | {params} | {metric} | {size} | {check} |")
    return "\n".join(rows)


def main(args: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m backbones.weights", description=__doc__)
    parser.add_argument("name", nargs="?", help="only the weights of this backbone or task model")
    parser.add_argument("--sources", action="store_true", help="also list each entry's URL and metric source")
    options = parser.parse_args(args)
    entries = list_weights(options.name)
    print(table(entries))
    if options.sources:
        for entry in entries:
            hashed = f"sha256 {entry.sha256}" if entry.verified else entry.note or "unverified: no published hash"
            print(f"\n{entry.name} {entry.tag}: {entry.url} ({hashed})\n  metrics: {entry.metrics_source}")


if __name__ == "__main__":
    main()
