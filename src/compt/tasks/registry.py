"""The task registry: built-in task definitions and task sets read from ``builtin.yaml``.

``get_task`` and ``resolve_tasks`` accept per-task overrides (the Hydra ``tasks`` group composes to
``{name: overrides}``); a name that is not built in must carry its full definition in its overrides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from compt.tasks.spec import TaskError, TaskSpec, as_plain


@cache
def _builtin() -> dict[str, Any]:
    """Parsed ``builtin.yaml`` (``tasks`` and ``task_sets``)."""
    text = resources.files("compt.tasks").joinpath("builtin.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def builtin_definitions() -> dict[str, dict[str, Any]]:
    """Built-in task name -> its YAML definition (a fresh copy)."""
    return {k: dict(v) for k, v in _builtin()["tasks"].items()}


#: task-set name -> task names, in order ("glue", "set2", "set2_mnli", "demo")
TASK_SETS: dict[str, list[str]] = {k: list(v) for k, v in _builtin()["task_sets"].items()}

#: names of the built-in tasks, in definition order
BUILTIN_TASKS: tuple[str, ...] = tuple(_builtin()["tasks"])


def get_task(name: str, overrides: Mapping[str, Any] | None = None) -> TaskSpec:
    """The task ``name``: its built-in definition updated by ``overrides``, or (for a user task) the
    full definition given as ``overrides``. Unknown name without a definition: ``ValueError`` listing names."""
    overrides = as_plain(overrides or {})
    base = builtin_definitions().get(name)
    if base is None and not overrides:
        raise TaskError(
            f"unknown task {name!r}; built-in tasks: {', '.join(BUILTIN_TASKS)}; "
            f"task sets: {', '.join(TASK_SETS)}. A new task needs its definition "
            f"(conf/tasks/{name}.yaml, see docs/tasks.md)"
        )
    return TaskSpec.from_dict(name, {**(base or {}), **overrides})


def resolve_tasks(spec: Any) -> list[TaskSpec]:
    """Tasks from a config value, in order, duplicates removed.

    ``spec`` is a task or set name, a comma-separated string (``"rte,mrpc"``), a list mixing names, set names
    and ``TaskSpec`` objects, or a mapping ``name -> overrides`` (``None``/``{}`` = the built-in definition),
    which is what the Hydra ``tasks`` group composes to.
    """
    if isinstance(spec, TaskSpec):
        return [spec]
    if isinstance(spec, str):
        spec = [s.strip() for s in spec.split(",") if s.strip()]
    out: dict[str, TaskSpec] = {}
    if isinstance(spec, Mapping):
        for name, overrides in spec.items():
            out[str(name)] = get_task(str(name), overrides)
    elif isinstance(spec, Sequence):
        for item in spec:
            if isinstance(item, TaskSpec):
                out[item.name] = item
            elif str(item) in TASK_SETS:
                out.update({n: get_task(n) for n in TASK_SETS[str(item)] if n not in out})
            else:
                out[str(item)] = get_task(str(item))
    else:
        raise TaskError(
            f"cannot read tasks from {spec!r}: give names, a list, or a mapping name -> overrides"
        )
    if not out:
        raise TaskError("no tasks selected")
    return list(out.values())


def user_task_definition(name: str, config_dir: str | Path) -> dict[str, Any] | None:
    """The definition of user task ``name`` in ``<config_dir>/tasks/<name>.yaml`` (docs/tasks.md), or None.

    Such a file's only key is ``name`` and its value a full task definition; a built-in task's selector file
    (``rte: {}``) or a task set's defaults list is not a definition, so None.
    """
    path = Path(config_dir) / "tasks" / f"{name}.yaml"
    if not path.is_file():
        return None
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise TaskError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(content, dict) or set(content) != {name} or not content[name]:
        return None
    if not isinstance(content[name], Mapping):
        raise TaskError(f"{path}: the value of {name!r} must be a mapping of task fields (docs/tasks.md)")
    return dict(content[name])


def resolve_task_names(names: Sequence[str], config_dir: str | Path) -> list[TaskSpec]:
    """Tasks from names as typed on a command line: built-in tasks, task sets, and user tasks defined in
    ``<config_dir>/tasks/<name>.yaml`` (as ``train.py tasks=[...]`` finds them), in order, duplicates removed."""
    out: dict[str, TaskSpec] = {}
    for name in names:
        definition = (
            None if name in BUILTIN_TASKS or name in TASK_SETS else user_task_definition(name, config_dir)
        )
        if definition is None:
            try:
                specs = resolve_tasks([name])
            except TaskError as err:
                raise TaskError(f"{err}; looked for a definition in {Path(config_dir) / 'tasks'}") from None
        else:
            specs = [get_task(name, definition)]
        out.update({spec.name: spec for spec in specs if spec.name not in out})
    if not out:
        raise TaskError("no tasks selected")
    return list(out.values())
