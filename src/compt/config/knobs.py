"""Pass-through knobs: config keys that set one library field each, declared once, on that field.

A library dataclass field a user sets from the command line says so where it is defined::

    batch_size: int = knob("data.batch_size", 20)
    \"\"\"training batch size (per process)\"\"\"

(:func:`compt.fields.knob`). From the fields of :data:`LIBRARY` come the schema's pass-through keys, with the
library's type, default and doc (:func:`with_knobs` adds them to the hand-written sections of
:mod:`compt.config.schema`), the values each library object of a run is built from (:func:`knob_values`, used
by :class:`compt.config.run_config.RunConfig`), and the key an error about a field names
(:func:`compt.config.keys.typed_keys`). Adding a pass-through knob is one library field (plus its README row).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any

from compt.adapters.options import ADAPTER_OPTIONS
from compt.data.config import DataConfig
from compt.evaluation.config import EvalConfig
from compt.fields import knob_key
from compt.optim import OptimConfig
from compt.prompts.config import PromptBankConfig
from compt.prompts.methods import METHOD_TRAITS
from compt.prompts.router import RouterSchedule
from compt.tasks import TaskSpec

#: the library classes a run's config builds, by :class:`~compt.config.run_config.RunConfig` part (a knob of
#: ``TaskSpec`` sets that field of every task of the run: the run-wide text protocol); the settings of the methods
#: that have their own come from their traits (:func:`option_classes`)
LIBRARY: dict[str, type] = {
    "data": DataConfig,
    "bank": PromptBankConfig,
    "optim": OptimConfig,
    "router": RouterSchedule,
    "evaluation": EvalConfig,
    "tasks": TaskSpec,
}


def option_classes() -> list[type]:
    """The settings of the methods that have their own (``method.mpt_rank``, ...: the prompt bank's options,
    :data:`compt.prompts.methods.METHOD_TRAITS`), then the PEFT adapters' (``method.lora_r``, ...:
    :data:`compt.adapters.options.ADAPTER_OPTIONS`, the bank's ``adapter``)."""
    return [
        *(t.options for t in METHOD_TRAITS.values() if t.options is not None),
        *ADAPTER_OPTIONS.values(),
    ]


@dataclass(frozen=True)
class Knob:
    """One pass-through key: ``key`` sets field ``name`` of library class ``owner``."""

    key: str
    """the dotted key a user types (``eval.max_samples``)"""
    owner: type
    """the library class (``DataConfig``)"""
    name: str
    """its field (``eval_max_samples``)"""
    type: Any
    """the key's type in the schema (a tuple field is a list there)"""
    default: Any

    @property
    def section(self) -> str:
        """The dotted section the key is in (``eval``; ``""`` at the top)."""
        return self.key.rpartition(".")[0]

    @property
    def leaf(self) -> str:
        return self.key.rpartition(".")[2]


def knobs(classes: Iterable[type] | None = None) -> list[Knob]:
    """Every pass-through key of ``classes`` (default: :data:`LIBRARY` and the methods' options), in their
    order. Two fields declaring one key is a programming error (``TypeError``)."""
    found: dict[str, Knob] = {}
    for cls in classes if classes is not None else [*LIBRARY.values(), *option_classes()]:
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            key = knob_key(f)
            if key is None:
                continue
            if key in found:
                first = found[key]
                raise TypeError(
                    f"{key} is declared twice: {first.owner.__name__}.{first.name}, {cls.__name__}.{f.name}"
                )
            found[key] = Knob(key, cls, f.name, schema_type(hints[f.name]), f.default)
    return list(found.values())


def schema_type(kind: Any) -> Any:
    """A library field's type as OmegaConf types a key: ``tuple[X, ...]`` becomes ``list[X]``."""
    if typing.get_origin(kind) is tuple:
        return list[typing.get_args(kind)[0]]  # type: ignore[index]
    return kind


def knob_values(schema: Any, owner: type, all_knobs: Iterable[Knob] | None = None) -> dict[str, Any]:
    """``{field: value}`` of every knob of ``owner`` in a typed config (a list given back as a tuple where the
    library field is one)."""
    values = {}
    for k in all_knobs if all_knobs is not None else knobs([owner]):
        if k.owner is not owner:
            continue
        value = _select(schema, k.key)
        values[k.name] = tuple(value) if isinstance(k.default, tuple) and value is not None else value
    return values


def _select(node: Any, key: str) -> Any:
    for part in key.split("."):
        node = getattr(node, part)
    return node


def with_knobs(
    section: type, every: Sequence[Knob], path: str = "", built: dict[str, type] | None = None
) -> type:
    """``section`` (a hand-written dataclass of the schema at ``path``; ``""``: the top) with a field for every
    knob under ``path``: a key right under it is a field of the library's type and default; a key further down
    goes to the section it names (``optim.lr.router``: ``lr``), built the same way from ``section``'s field of
    that name or, where it has none, from an empty section. ``built`` collects every class made, by name.

    Raises:
        TypeError: a knob's key is a hand-written key too, or lies below a key that is not a section.
    """
    built = {} if built is None else built
    hints = typing.get_type_hints(section)
    prefix = f"{path}." if path else ""
    below = [k for k in every if k.key.startswith(prefix)]
    added: list[tuple[str, Any, Any]] = []
    for name in dict.fromkeys(k.key[len(prefix) :].partition(".")[0] for k in below if k.section != path):
        base = hints.get(name) or _empty_section(prefix + name)
        if not dataclasses.is_dataclass(base):
            raise TypeError(f"{prefix}{name} is a key of the schema, not a section: no knob can lie below it")
        sub = with_knobs(base, below, prefix + name, built)  # type: ignore[arg-type]
        added.append((name, sub, field(default_factory=sub)))
    for k in below:
        if k.section != path:
            continue
        if k.leaf in hints:
            raise TypeError(f"{k.key} is a key of the schema and a knob ({k.owner.__name__}.{k.name})")
        added.append((k.leaf, k.type, _default(k.default)))
    namespace = {"__doc__": section.__doc__, "__module__": section.__module__}
    made = make_dataclass(section.__name__, added, bases=(section,), namespace=namespace)
    built[made.__name__] = made
    return made


def _empty_section(path: str) -> type:
    name = "".join(part.title() for part in path.split(".")) + "Section"
    return make_dataclass(name, [], namespace={"__doc__": f"``{path}.*``: pass-through keys (knobs)."})


def _default(default: Any) -> Any:
    if isinstance(default, tuple):  # a list in the schema
        return field(default_factory=lambda: list(default))
    return field(default=default)
