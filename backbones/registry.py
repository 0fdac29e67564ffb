"""Name -> spec-table factory. Registry keys equal the CLI's `--backbone` values."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from backbones.spec import NetworkSpec

SpecFactory = Callable[..., NetworkSpec]
_REGISTRY: dict[str, SpecFactory] = {}


def register_backbone(name: str) -> Callable[[SpecFactory], SpecFactory]:
    """Register a spec factory whose keyword arguments are the variant's options."""

    def decorator(factory: SpecFactory) -> SpecFactory:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return decorator


def list_backbones() -> list[str]:
    """Names accepted by `create_backbone` and `create_classifier`."""
    return sorted(_REGISTRY)


def variant_options(name: str) -> dict[str, Any]:
    """The options a backbone accepts, with their defaults."""
    factory = _lookup(name)
    return {p.name: p.default for p in inspect.signature(factory).parameters.values()}


def get_spec(name: str, **options: Any) -> NetworkSpec:
    """The spec table of `name` with its variant options applied; unknown names or options raise."""
    factory = _lookup(name)
    valid = variant_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TypeError(f"backbone {name!r} got unknown option(s) {unknown}; valid options: {sorted(valid)}")
    return factory(**options)


def _lookup(name: str) -> SpecFactory:
    if name not in _REGISTRY:
        raise ValueError(f"unknown backbone {name!r}; valid names: {list_backbones()}")
    return _REGISTRY[name]
