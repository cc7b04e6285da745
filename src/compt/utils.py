"""Small helpers used across layers: :func:`evaluating` (a module in eval mode for a block),
:func:`finite_or_none` / :func:`json_safe` (JSON has no NaN) and :func:`share_like_new_file` (a file written
through a private temporary file gets the user's umask). Imports nothing heavy."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
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


def current_umask() -> int:
    """The process's umask, read without changing it where Linux tells it (``/proc/self/status``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore
    os.umask(mask)
    return mask


def share_like_new_file(path: str | Path) -> None:
    """Give ``path`` the mode a plain ``open(path, "w")`` would have: ``0o666`` minus the umask.

    ``tempfile.mkstemp`` (atomic writes) and safetensors create files ``0600``, so teammates reading a shared
    sweep folder could not open them."""
    os.chmod(path, 0o666 & ~current_umask())
