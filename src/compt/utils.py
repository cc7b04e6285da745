"""Two small helpers used across layers: :func:`evaluating` (a module in eval mode for a block) and
:func:`finite_or_none` (JSON has no NaN). Imports nothing heavy."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from torch import nn

    ModuleT = TypeVar("ModuleT", bound=nn.Module)
else:
    ModuleT = TypeVar("ModuleT")


@contextmanager
def evaluating(module: ModuleT) -> Iterator[ModuleT]:
    """``module`` in eval mode inside the block (no dropout, evaluation-mode router); its previous mode
    (training or eval) is restored afterwards, also when the block raises."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


def finite_or_none(value: float) -> float | None:
    """``value``, or None when it is NaN or infinite (an invalid prediction; JSON has no NaN)."""
    return value if math.isfinite(value) else None


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float inside (dicts, lists, tuples) replaced by None."""
    if isinstance(value, float):
        return finite_or_none(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
