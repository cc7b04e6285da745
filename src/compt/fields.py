"""Reject unknown keys when a config dataclass is built from a mapping (YAML, JSON, Hydra)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import Any


def unknown_keys(
    cls: type, values: Mapping[str, Any], exclude: Iterable[str] = ()
) -> tuple[list[str], list[str]]:
    """``(unknown, allowed)``: the keys of ``values`` that are not fields of dataclass ``cls`` (nor excluded),
    and the allowed field names, both sorted, for an error message that names them."""
    allowed = {f.name for f in fields(cls)} - set(exclude)
    return sorted(set(values) - allowed), sorted(allowed)
