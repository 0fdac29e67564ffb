"""What a backbone's forward returns: one entry per tap, with channels and reduction (stride)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class FeatureTap:
    module: str  # where the tap is read, e.g. "blocks.5" or "blocks.12.expand"
    channels: int
    reduction: int  # input size / feature size, after any stride-to-dilation conversion


class FeatureInfo(Sequence[FeatureTap]):
    """timm-style description of the feature list, so that heads size themselves from it alone."""

    def __init__(self, taps: Sequence[FeatureTap]) -> None:
        self.taps = tuple(taps)

    def channels(self) -> list[int]:
        return [tap.channels for tap in self.taps]

    def reduction(self) -> list[int]:
        return [tap.reduction for tap in self.taps]

    def module_name(self) -> list[str]:
        return [tap.module for tap in self.taps]

    def __getitem__(self, index):  # type: ignore[override]
        return self.taps[index]

    def __len__(self) -> int:
        return len(self.taps)

    def __iter__(self) -> Iterator[FeatureTap]:
        return iter(self.taps)

    def __repr__(self) -> str:
        return f"FeatureInfo(channels={self.channels()}, reduction={self.reduction()})"
