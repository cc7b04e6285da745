"""Evaluation-time masks for the source-masking analysis (paper Figs. 3/4/6, docs/method.md §3)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from compt.errors import ConfigError
from compt.prompts.methods import method_traits


@dataclass(frozen=True)
class PromptMask:
    """Which parts of the composition take part.

    Attributes:
        name: the mask's name (``total``, ``private``, ``all_src``, ``src{i}``).
        keep_private: whether the private prompt takes part.
        keep_sources: one flag per source prompt.
    """

    name: str
    keep_private: bool
    keep_sources: tuple[bool, ...]


def mask_names(n_sources: int) -> list[str]:
    """Every mask that applies to a bank with ``n_sources`` sources, in report order."""
    return [f"src{i}" for i in range(n_sources)] + ["all_src", "private", "total"]


def masks_for(method: str, n_sources: int) -> list[str]:
    """Every mask that applies to ``method`` with ``n_sources`` sources (``compt evaluate --masks all``)."""
    traits = method_traits(method)
    if not traits.maskable:
        return ["total"]
    return [name for name in mask_names(n_sources) if name != "private" or traits.private]


def parse_mask(name: str, method: str, n_sources: int) -> PromptMask:
    """Turn a mask name into a :class:`PromptMask` for ``method``.

    ``total``: everything; ``private``: the private prompt alone; ``all_src``: every source, no private;
    ``src{i}``: source i alone — with the private prompt kept where it multiplies the sources (``msum``/``mcat``:
    their product needs it) and dropped where it is added (``ssum``/``attempt``), so the column isolates the source.
    """
    traits = method_traits(method)
    if name == "total":
        return PromptMask(name, traits.private, (True,) * n_sources)
    if not traits.maskable:
        raise ConfigError(f"mask {name!r} needs several source prompts; method {method!r} has only 'total'")
    if name == "private":
        if not traits.private:
            raise ConfigError(f"mask 'private' needs a private prompt; method {method!r} has none")
        return PromptMask(name, True, (False,) * n_sources)
    if name == "all_src":
        return PromptMask(name, False, (True,) * n_sources)
    match = re.fullmatch(r"src(\d+)", name)
    if match:
        index = int(match.group(1))
        if index >= n_sources:
            raise ConfigError(f"mask {name!r}: the bank has {n_sources} sources (src0..src{n_sources - 1})")
        keep = tuple(i == index for i in range(n_sources))
        return PromptMask(name, traits.single_source_keeps_private, keep)
    raise ConfigError(f"unknown mask {name!r}; choose from {', '.join(mask_names(n_sources))}")
