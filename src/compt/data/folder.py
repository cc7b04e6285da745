"""A local data folder ``<root>/<task>/<split>.{parquet,jsonl,csv}``: written from the hub (``compt data
snapshot``) and checked against the task definitions (``compt data check``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from compt.atomic import atomic_path
from compt.data.sources import (
    filter_rows,
    formats_warning,
    load_hub,
    load_local_file,
    local_file,
    other_formats,
)
from compt.data.validate import duplicate_warning, find_problems, find_warnings
from compt.errors import DataError
from compt.tasks import BUILTIN_TASKS, TaskSpec, user_task_definition


def task_splits(task: TaskSpec, splits: Sequence[str] | None = None) -> list[str]:
    """Requested splits (comma lists allowed), default the task's train and evaluation splits."""
    if splits:
        return [s for v in splits for s in v.split(",") if s]
    return list(dict.fromkeys([task.train_split, task.eval_split]))


def snapshot(
    tasks: Sequence[TaskSpec], out: str | Path, splits: Sequence[str] | None = None
) -> tuple[list[Path], list[str]]:
    """Write ``<out>/<task>/<split>.parquet`` from the hub for every task and split (progress bar on stderr):
    the rows a task's ``row_filter`` keeps (one MRQA subset per task), in the hub's columns.

    Returns the files written and one message per split that could not be fetched (the others are written
    anyway).
    """
    jobs = [(t, s) for t in tasks for s in task_splits(t, splits)]
    written: list[Path] = []
    failures: list[str] = []
    for task, split in (bar := tqdm(jobs, desc="snapshot", unit="split")):
        bar.set_postfix_str(f"{task.name}/{split}")
        try:
            dataset = filter_rows(task, load_hub(task, split))
        except DataError as err:
            failures.append(str(err))
            continue
        path = Path(out) / task.name / f"{split}.parquet"
        with atomic_path(path, elsewhere="--out DIR") as partial:  # whole, or the previous file kept
            dataset.to_parquet(str(partial))
        written.append(path)
    return written, failures


def known_task_folders(root: str | Path, config_dir: str | Path) -> list[str]:
    """The sub-folders of ``root`` that name a known task (built-in, or ``<config_dir>/tasks/<name>.yaml``)."""
    return [
        p.name
        for p in sorted(Path(root).iterdir())
        if p.is_dir() and (p.name in BUILTIN_TASKS or user_task_definition(p.name, config_dir))
    ]


def check_folder(
    root: str | Path, tasks: Sequence[TaskSpec], splits: Sequence[str] | None = None
) -> list[str]:
    """Every problem of a local data folder for ``tasks`` (missing task folder or split, missing columns,
    text fields without text or not UTF-8, labels outside the task's labels, empty splits); an empty list
    means the folder is usable."""
    return inspect_folder(root, tasks, splits)[0]


def inspect_folder(
    root: str | Path, tasks: Sequence[TaskSpec], splits: Sequence[str] | None = None
) -> tuple[list[str], list[str]]:
    """``(problems, warnings)`` of a local data folder: :func:`check_folder`'s problems, and what is usable
    but suspicious (blank text fields)."""
    problems: list[str] = []
    warnings: list[str] = []
    for task in tasks:
        folder = Path(root) / task.name
        if not folder.is_dir():
            problems.append(f"{task.name}: missing task folder {folder}")
            continue
        for split in task_splits(task, splits):
            path = local_file(folder, split)
            ignored = other_formats(folder, split)
            if ignored:
                warnings.append(f"{task.name}/{split}: {formats_warning(path, ignored)}")
            if path is None:
                problems.append(f"{task.name}/{split}: missing file {folder}/{split}.{{parquet,jsonl,csv}}")
                continue
            try:
                dataset = load_local_file(path)
            except DataError as err:  # unreadable file: report and go on
                problems.append(f"{task.name}/{split}: {err}")
                continue
            problems += find_problems(task, split, dataset, str(path))
            warnings += find_warnings(task, split, dataset, str(path))
            repeated = duplicate_warning(task, dataset)
            if repeated:
                warnings.append(f"{task.name}/{split} ({path}): {repeated}")
    return problems, warnings
