"""Exact evaluation under torch.distributed: unpadded evaluation shards and gathering per-rank results.

Lightning's default distributed sampler pads the last batch with repeated samples so that every rank runs
the same number of batches; a metric summed over ranks would count those repeats twice. Evaluation loaders
therefore get Lightning's `UnrepeatedDistributedSampler` (disjoint shards, sizes may differ by one; evaluation
has no per-batch collective, so uneven shards are safe), and per-image results are gathered to every rank.
"""

from __future__ import annotations

from typing import Any

import torch.distributed as dist
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import Dataset, Sampler


def world_size() -> int:
    """Processes in the default group, 1 outside torch.distributed."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def evaluation_sampler(dataset: Dataset) -> Sampler | None:
    """This rank's disjoint, unpadded share of an evaluation set; None (plain order) in one process."""
    if world_size() == 1:
        return None
    return UnrepeatedDistributedSampler(dataset, num_replicas=world_size(), rank=dist.get_rank(), shuffle=False)


def gather_objects(items: list[Any]) -> list[Any]:
    """Every rank's `items` concatenated in rank order, on every rank (this rank's own list in one process)."""
    if world_size() == 1:
        return list(items)
    gathered: list[list[Any] | None] = [None] * world_size()
    dist.all_gather_object(gathered, list(items))
    return [item for part in gathered for item in part or []]
