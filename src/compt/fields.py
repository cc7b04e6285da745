"""Config dataclasses: unknown keys rejected by name when one is built from a mapping (YAML, JSON, Hydra), and
the config key a user types for a library field (its *knob*)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import Field, field, fields
from typing import Any

#: the metadata entry of a dataclass field naming the config key it is set from (:func:`knob`)
KNOB = "compt_key"


def unknown_keys(
    cls: type, values: Mapping[str, Any], exclude: Iterable[str] = ()
) -> tuple[list[str], list[str]]:
    """``(unknown, allowed)``: the keys of ``values`` that are not fields of dataclass ``cls`` (nor excluded),
    and the allowed field names, both sorted, for an error message that names them."""
    allowed = {f.name for f in fields(cls)} - set(exclude)
    return sorted(set(values) - allowed), sorted(allowed)


def knob(key: str, default: Any) -> Any:
    """A dataclass field that a run's config sets from the key a user types, ``key`` (dotted from the top of
    the config: ``"data.batch_size"``, ``"eval.max_samples"``, ``"seed"``). The config schema gets that key with
    this field's type and default, and the run passes its value here (:mod:`compt.config.knobs`); the field's
    docstring documents it. ``default`` is immutable (a tuple, not a list)."""
    return field(default=default, metadata={KNOB: key})


def knob_key(f: Field[Any]) -> str | None:
    """The config key a dataclass field is set from (:func:`knob`), or None."""
    return f.metadata.get(KNOB)
