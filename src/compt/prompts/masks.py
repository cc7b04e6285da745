"""Evaluation-time masks for the source-masking analysis (paper Figs. 3/4/6, METHOD.md §3)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from compt.errors import ConfigError


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


def parse_mask(name: str, method: str, n_sources: int) -> PromptMask:
    """Turn a mask name into a :class:`PromptMask` for ``method``.

    ``total``: everything; ``private``: the private prompt alone; ``all_src``: every source, no private;
    ``src{i}``: source i alone — with the private prompt kept for ``msum``/``mcat`` (their product needs it)
    and dropped for the additive ``ssum``/``attempt``/``sources_only`` (so the column isolates the source).
    """
    if name == "total":
        return PromptMask(name, method != "sources_only", (True,) * n_sources)
    if method in ("pt", "mpt"):
        raise ConfigError(f"mask {name!r} needs several source prompts; method {method!r} has only 'total'")
    if name == "private":
        if method == "sources_only":
            raise ConfigError("mask 'private' needs a private prompt; method 'sources_only' has none")
        return PromptMask(name, True, (False,) * n_sources)
    if name == "all_src":
        return PromptMask(name, False, (True,) * n_sources)
    match = re.fullmatch(r"src(\d+)", name)
    if match:
        index = int(match.group(1))
        if index >= n_sources:
            raise ConfigError(f"mask {name!r}: the bank has {n_sources} sources (src0..src{n_sources - 1})")
        keep = tuple(i == index for i in range(n_sources))
        return PromptMask(name, method in ("msum", "mcat"), keep)
    raise ConfigError(f"unknown mask {name!r}; choose from {', '.join(mask_names(n_sources))}")
