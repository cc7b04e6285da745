"""Public names of a package imported on first use (PEP 562), so that importing the package — and
``compt --help``, which imports every area's ``cli`` module — does not import torch or Lightning."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_exports(
    namespace: dict[str, Any], modules: Mapping[str, Sequence[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for the package whose globals are ``namespace``; ``modules`` maps
    a module to the public names it defines, each imported from there when first used.

    Use in a package's ``__init__``::

        __getattr__, __dir__, __all__ = lazy_exports(globals(), {"compt.prompts.bank": ["PromptBank"]})
    """
    package = namespace["__name__"]
    exports = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        namespace[name] = value  # later look-ups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__, sorted(exports)
