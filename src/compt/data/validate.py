"""Checks that a loaded split fits its task: columns present, not empty, every label valid."""

from __future__ import annotations

from collections import Counter

import datasets

from compt.errors import DataError, TaskError
from compt.tasks import TaskSpec


def find_problems(task: TaskSpec, split: str, dataset: datasets.Dataset, origin: str = "") -> list[str]:
    """Every problem of ``task``/``split`` (one message each); empty list = the split is usable."""
    where = f"{task.name}/{split}" + (f" ({origin})" if origin else "")
    missing = [c for c in task.required_columns if c not in dataset.column_names]
    problems = []
    if missing:
        problems.append(f"{where}: missing column(s) {missing}; the file has {dataset.column_names}")
    if len(dataset) == 0:
        problems.append(f"{where}: the split is empty")
    if task.label_column in missing or len(dataset) == 0:
        return problems
    counts = Counter(_hashable(v) for v in dataset[task.label_column])
    bad = {}
    for value, count in counts.items():
        try:
            task.gold({task.label_column: value})
        except (TaskError, TypeError):
            bad[value] = count
    if bad:
        allowed = (
            f"scores in {task.regression_range[0]}..{task.regression_range[1]}"
            if task.is_regression
            else f"class ids 0..{task.num_labels - 1}"
            + (f" or {sorted(task.label_values)}" if task.label_values else "")
        )
        shown = ", ".join(f"{v!r} ({n} rows)" for v, n in list(bad.items())[:5])
        problems.append(
            f"{where}: {sum(bad.values())} row(s) with a label outside the task's labels: {shown}; "
            f"allowed: {allowed}"
        )
    return problems


def check_split(task: TaskSpec, split: str, dataset: datasets.Dataset, origin: str = "") -> None:
    """Raise ``DataError`` listing every problem of the split, if any."""
    problems = find_problems(task, split, dataset, origin)
    if problems:
        raise DataError("\n".join(problems))


def _hashable(value: object) -> object:
    """Lists (unexpected label cells) become tuples so they can be counted."""
    return tuple(value) if isinstance(value, list) else value
