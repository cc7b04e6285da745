"""``train.py``'s overrides checked before Hydra composes them: every key must be one of the schema's
(:class:`~compt.config.schema.TrainSchema`) and every option of a config group must be a file of ``conf/``.

Hydra answers a typo'd key with "use +metod=msum", and following that hint adds a key nothing reads: the
default method trains, silently. Here an unknown key is refused with or without ``+`` (``++``), naming the
closest known key; an unknown option of a group (``tasks=[sst2,rtee]``) is refused naming the closest option
and listing them all, where Hydra prints only its search path. Keys below a free-form section
(``trainer.*``, ``logger.*``, ``callbacks.*``, ``tasks.*``, ``paths.*``) and ``hydra.*`` are Hydra's and the
libraries' to check. :func:`unknown_schema_keys` finds the same mistakes in a composed config (a key added by
a YAML file of ``conf/``).
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra._internal.utils import get_args_parser
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, Override
from hydra.errors import HydraException

from compt.errors import ConfigError

#: what a key's refusal points to
KEYS_HELP = "every key: README's key table, src/compt/config/schema.py"


def schema_keys(schema: type) -> tuple[list[str], list[str]]:
    """``(keys, free-form sections)`` of a dataclass schema, dotted (``model``, ``model.name``, ...): a field
    typed by a dataclass is a section whose fields are keys too; a ``dict`` field is free-form."""
    keys: list[str] = []
    free: list[str] = []
    for name, kind in _fields(schema):
        keys.append(name)
        if dataclasses.is_dataclass(kind):
            sub_keys, sub_free = schema_keys(kind)  # type: ignore[arg-type]
            keys += [f"{name}.{k}" for k in sub_keys]
            free += [f"{name}.{k}" for k in sub_free]
        elif typing.get_origin(kind) is dict or kind is dict:
            free.append(name)
    return keys, free


def _fields(schema: type) -> Iterator[tuple[str, Any]]:
    hints = typing.get_type_hints(schema)
    for field in dataclasses.fields(schema):  # type: ignore[arg-type]
        yield field.name, hints[field.name]


def unknown_key_message(key: str, schema: type) -> str | None:
    """Why ``key`` (dotted) is not a key of ``schema``, naming the closest known one; None when it is one or
    lies below a free-form section."""
    keys, free = schema_keys(schema)
    if key in keys or any(key.startswith(f"{section}.") for section in free):
        return None
    parent = key.rpartition(".")[0]
    if parent in free:
        return None
    closest = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    hint = f"; did you mean {closest[0]}?" if closest else ""
    if parent in keys:
        siblings = [k.rpartition(".")[2] for k in keys if k.rpartition(".")[0] == parent]
        return f"unknown key {key}{hint} ({parent} has: {', '.join(siblings)})"
    return f"unknown key {key}{hint} ({KEYS_HELP})"


def unknown_schema_keys(cfg: Mapping[str, Any], schema: type, prefix: str = "") -> list[str]:
    """The dotted keys of a composed config that ``schema`` does not have (free-form sections not searched)."""
    fields = dict(_fields(schema))
    unknown = []
    for key, value in cfg.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            unknown.append(dotted)
        elif dataclasses.is_dataclass(fields[key]) and isinstance(value, Mapping):
            unknown += unknown_schema_keys(value, fields[key], f"{dotted}.")
    return unknown


def refuse_unknown_schema_keys(cfg: Mapping[str, Any], schema: type) -> None:
    """Refuse a composed config holding a key ``schema`` does not have (:func:`unknown_schema_keys`).

    Raises:
        ConfigError: naming the first such key and the closest known one.
    """
    for key in unknown_schema_keys(cfg, schema):
        message = unknown_key_message(key, schema)
        if message is not None:
            raise ConfigError(f"config: {message}")


def config_groups(config_dir: Path) -> dict[str, list[str]]:
    """Every config group of ``config_dir`` outside ``hydra/`` (``method``, ``tasks``, ...) -> its options."""
    groups = {}
    for folder in sorted(p for p in config_dir.rglob("*") if p.is_dir()):
        group = folder.relative_to(config_dir).as_posix()
        if group != "hydra" and not group.startswith("hydra/"):
            groups[group] = sorted(p.stem for p in folder.glob("*.yaml"))
    return groups


def check_overrides(arguments: Sequence[str], schema: type, config_dir: Path) -> None:
    """Refuse an unknown key or group option among ``train.py``'s arguments (flags and Hydra's own overrides
    are left to Hydra).

    Raises:
        ConfigError: one line naming the override, the closest known key or option, and the known ones.
    """
    args, _ = get_args_parser().parse_known_args(list(arguments))
    if args.config_path or args.config_name or args.config_dir:
        return  # another primary config: its keys are not these
    try:
        overrides = OverridesParser.create().parse_overrides(args.overrides)
    except HydraException:
        return  # a syntax error: Hydra's message says where
    if any(o.key_or_group == "hydra.searchpath" for o in overrides):
        return  # options may come from other folders
    groups = config_groups(config_dir)
    for override in overrides:
        if override.is_delete() or override.is_hydra_override():
            continue
        group = override.key_or_group
        if group in groups:
            _check_options(override, group, groups[group])
            continue
        message = unknown_key_message(group, schema)
        if message is not None:
            raise ConfigError(f"{override.input_line}: {message}")


def _check_options(override: Override, group: str, options: list[str]) -> None:
    for option in _named_options(override):
        if option in options:
            continue
        closest = difflib.get_close_matches(option, options, n=1, cutoff=0.6)
        hint = f" (did you mean {closest[0]}?)" if closest else ""
        kind = "task or task set" if group == "tasks" else "option"
        raise ConfigError(
            f"{override.input_line}: no {kind} {option} in conf/{group}/{hint}; known: {', '.join(options)}"
        )


def _named_options(override: Override) -> list[str]:
    """The plain option names an override of a group gives (a list, a sweep's choices); others skipped."""
    value = override.value()
    values = value.list if isinstance(value, ChoiceSweep) else [value]
    names = []
    for item in values:
        for option in item if isinstance(item, list) else [item]:
            if isinstance(option, str) and "${" not in option:
                names.append(option)
    return names
