"""Tasks as data: ``TaskSpec`` (text format, label words, metrics) and the built-in registry."""

from compt.tasks.registry import (
    BUILTIN_TASKS,
    TASK_SETS,
    builtin_definitions,
    get_task,
    resolve_task_names,
    resolve_tasks,
    user_task_definition,
)
from compt.tasks.spec import KNOWN_METRICS, TaskError, TaskSpec

__all__ = [
    "BUILTIN_TASKS",
    "KNOWN_METRICS",
    "TASK_SETS",
    "TaskError",
    "TaskSpec",
    "builtin_definitions",
    "get_task",
    "resolve_task_names",
    "resolve_tasks",
    "user_task_definition",
]
