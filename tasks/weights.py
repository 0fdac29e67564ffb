"""`python -m tasks.weights`: the named-weights registry as a Markdown table, parameters counted by building each
entry's registered model (`tasks.get_model`). It lives here, not in `backbones.weights`, because the task models
are registered here."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from torch import nn

from backbones.weights import WeightsEntry, list_weights
from tasks.models import get_model


def build_model(entry: WeightsEntry) -> nn.Module:
    """The registered model that `entry`'s file loads into, randomly initialised, with the entry's class count and
    build options."""
    return get_model(entry.name, num_classes=len(entry.categories), **entry.build_options)


def table(entries: Sequence[WeightsEntry]) -> str:
    rows = ["| name | tag | source | parameters | published metric | preprocessing | download check |"]
    rows.append("|---|---|---|---|---|---|---|")
    for entry in entries:
        params = f"{sum(p.numel() for p in build_model(entry).parameters()):,}"
        tag = entry.tag + "".join(f" (= {alias})" for alias in entry.aliases)
        metric = ", ".join(f"{key} {value:g}" for key, value in entry.metrics.items()) or "-"
        mean, std = (",".join(f"{v:g}" for v in values) for values in (entry.mean, entry.std))
        resize = f"resize {entry.resize_size}, " if entry.resize_size and entry.resize_size != entry.image_size else ""
        size = f"{resize}{entry.image_size} px {entry.interpolation}, mean {mean}, std {std}"
        check = f"sha256 {entry.sha256[:8]}" if entry.verified else "**unverified** (no published hash)"
        rows.append(f"| {entry.name} | {tag} | {entry.source} | {params} | {metric} | {size} | {check} |")
    return "\n".join(rows)


def main(args: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tasks.weights", description=__doc__)
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
