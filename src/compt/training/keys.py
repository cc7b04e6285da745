"""The config key a user types for each library field, so that an error names ``optim.lr.router`` or
``eval.max_samples`` rather than ``OptimConfig.lr_router`` or ``DataConfig.eval_max_samples``.

The mapping is read from the schema itself: a field of :mod:`compt.training.schema` whose docstring says
``→ Class.field`` passes its value to that library field (see the schema's module docstring), and its key is
the path of section names from :class:`~compt.training.schema.TrainSchema` down to it.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Callable
from dataclasses import fields
from functools import cache
from typing import Any, TypeVar

from compt.errors import ConfigError
from compt.fields import knob_key

T = TypeVar("T")

#: ``→ Class.field`` in a schema field's docstring
ARROW = re.compile(r"→ (\w+)\.(\w+)")


@cache
def typed_keys() -> dict[str, str]:
    """``{"DataConfig.eval_max_samples": "eval.max_samples", "OptimConfig.lr_router": "optim.lr.router", ...}``:
    every library field the schema feeds, and the key a user types for it (the first schema field that feeds
    it, in the schema's order)."""
    from compt.training import schema

    tree = ast.parse(inspect.getsource(schema))
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    keys: dict[str, str] = {}

    def walk(section: str, prefix: str) -> None:
        body = classes[section].body
        for index, statement in enumerate(body):
            if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
                continue
            name, annotation = statement.target.id, ast.unparse(statement.annotation)
            if annotation in classes:
                walk(annotation, f"{prefix}{name}.")
                continue
            doc = body[index + 1] if index + 1 < len(body) else None
            if isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant):
                for owner, field in ARROW.findall(str(doc.value.value)):
                    keys.setdefault(f"{owner}.{field}", f"{prefix}{name}")

    walk("TrainSchema", "")
    return keys


def in_typed_keys(message: str, owner: str) -> str:
    """``message`` (an error of library class ``owner``) with the library's field names replaced by the keys a
    user types: qualified names anywhere (``DataConfig.eval_max_samples``), and the field a message starts with
    (``router_sample='x'``, ``optim.lr_router must be...``)."""
    keys = typed_keys()
    start = re.match(r"(?:[a-z_]+\.)?(\w+)(?=[\s=])", message)
    if start and f"{owner}.{start[1]}" in keys:
        message = keys[f"{owner}.{start[1]}"] + message[start.end() :]
    return re.sub(r"\b\w+(?:Config|Schedule|Spec)\.\w+\b", lambda m: keys.get(m[0], m[0]), message)


def built(cls: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``cls(*args, **kwargs)``; a :class:`ConfigError` it raises names the keys a user types."""
    try:
        return cls(*args, **kwargs)
    except ConfigError as err:
        raise ConfigError(in_typed_keys(str(err), getattr(cls, "__name__", ""))) from None


def knob_values(schema: Any, *classes: type) -> dict[str, Any]:
    """``{field: value}`` of every field of ``classes`` that declares its key (a knob, :func:`compt.fields.knob`),
    read from the typed config ``schema`` at that key (``method.lora_r`` -> ``schema.method.lora_r``)."""
    values = {}
    for cls in classes:
        for f in fields(cls):
            key = knob_key(f)
            if key is not None:
                node = schema
                for part in key.split("."):
                    node = getattr(node, part)
                values[f.name] = node
    return values
