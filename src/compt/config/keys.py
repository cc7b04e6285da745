"""The config key a user types for each library field, so that an error names ``optim.lr.router`` or
``eval.max_samples`` rather than ``OptimConfig.lr_router`` or ``DataConfig.eval_max_samples``.

The mapping is the knobs' (:mod:`compt.config.knobs`): a library field declared ``knob("eval.max_samples", ...)``
is set from that key.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

from compt.config.knobs import knobs
from compt.errors import ConfigError

T = TypeVar("T")


@cache
def typed_keys() -> dict[str, str]:
    """``{"DataConfig.eval_max_samples": "eval.max_samples", "OptimConfig.lr_router": "optim.lr.router", ...}``:
    every library field a knob sets, and the key a user types for it."""
    return {f"{k.owner.__name__}.{k.name}": k.key for k in knobs()}


@cache
def _field_keys() -> dict[str, str]:
    """A field name -> its key, for the names only one library class uses (``mpt_rank``: an error of the bank
    about its method's options)."""
    keys = typed_keys()
    names = Counter(qualified.partition(".")[2] for qualified in keys)
    return {
        qualified.partition(".")[2]: key
        for qualified, key in keys.items()
        if names[qualified.partition(".")[2]] == 1
    }


def in_typed_keys(message: str, owner: str) -> str:
    """``message`` (an error of library class ``owner``) with the library's field names replaced by the keys a
    user types: qualified names anywhere (``DataConfig.eval_max_samples``), and the field a message starts with
    (``router_sample='x'``, ``optim.lr_router must be...``; a field of another class when its name is that
    class's alone: ``mpt_rank``)."""
    keys = typed_keys()
    start = re.match(r"(?:[a-z_]+\.)?(\w+)(?=[\s=])", message)
    if start:
        key = keys.get(f"{owner}.{start[1]}") or _field_keys().get(start[1])
        if key:
            message = key + message[start.end() :]
    return re.sub(r"\b\w+(?:Config|Schedule|Spec|Options)\.\w+\b", lambda m: keys.get(m[0], m[0]), message)


def built(cls: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``cls(*args, **kwargs)``; a :class:`ConfigError` it raises names the keys a user types."""
    try:
        return cls(*args, **kwargs)
    except ConfigError as err:
        raise ConfigError(in_typed_keys(str(err), getattr(cls, "__name__", ""))) from None
