"""``compt data``: ``snapshot`` (hub -> local parquet folder) and ``check`` (validate a local folder)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from compt.config_dir import default_config_dir
from compt.data.errors import DataError
from compt.data.sources import load_hub, load_local_file, local_file
from compt.data.validate import find_problems
from compt.tasks import BUILTIN_TASKS, TaskError, TaskSpec, resolve_task_names, user_task_definition


def _config_dir(args: argparse.Namespace) -> Path:
    return Path(args.config_dir) if args.config_dir else default_config_dir()


def _tasks(value: list[str] | None, default: list[str], config_dir: Path) -> list[TaskSpec]:
    """Task names, set names or comma lists (``--tasks glue``, ``--tasks rte,mrpc imdb``); a user task is
    read from ``<config_dir>/tasks/<name>.yaml``, as ``train.py`` reads it."""
    items = [s.strip() for v in (value or default) for s in v.split(",") if s.strip()]
    return resolve_task_names(items, config_dir)


def _splits(task: TaskSpec, splits: list[str] | None) -> list[str]:
    """Requested splits, default the task's train and evaluation splits."""
    if splits:
        return [s for v in splits for s in v.split(",") if s]
    return list(dict.fromkeys([task.train_split, task.eval_split]))


def snapshot(args: argparse.Namespace) -> int:
    """Write ``<out>/<task>/<split>.parquet`` from the hub for every requested task and split."""
    from tqdm.auto import tqdm

    try:
        tasks = _tasks(args.tasks, ["glue"], _config_dir(args))
    except TaskError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    jobs = [(t, s) for t in tasks for s in _splits(t, args.splits)]
    failures = 0
    for task, split in (bar := tqdm(jobs, desc="snapshot", unit="split")):
        bar.set_postfix_str(f"{task.name}/{split}")
        try:
            dataset = load_hub(task, split)
        except DataError as err:
            print(f"error: {err}", file=sys.stderr)
            failures += 1
            continue
        path = Path(args.out) / task.name / f"{split}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        dataset.to_parquet(str(path))
    if not failures:
        print(f"wrote {len(jobs)} split(s) to {args.out}; train with data.source=local data.dir={args.out}")
    return 1 if failures else 0


def check_folder(root: str | Path, tasks: list[TaskSpec], splits: list[str] | None = None) -> list[str]:
    """Every problem of a local data folder for ``tasks`` (missing task folder or split, missing columns,
    labels outside the task's labels, empty splits); an empty list means the folder is usable."""
    problems = []
    for task in tasks:
        folder = Path(root) / task.name
        if not folder.is_dir():
            problems.append(f"{task.name}: missing task folder {folder}")
            continue
        for split in _splits(task, splits):
            path = local_file(folder, split)
            if path is None:
                problems.append(f"{task.name}/{split}: missing file {folder}/{split}.{{parquet,jsonl,csv}}")
                continue
            try:
                dataset = load_local_file(path)
            except Exception as err:  # unreadable file: report and go on
                problems.append(f"{task.name}/{split}: cannot read {path}: {type(err).__name__}: {err}")
                continue
            problems += find_problems(task, split, dataset, str(path))
    return problems


def check(args: argparse.Namespace) -> int:
    """Validate a local folder against the task definitions (built-in and ``conf/tasks/<name>.yaml``); print
    every problem; exit 1 if there is any."""
    import datasets

    datasets.disable_progress_bars()
    root = Path(args.dir)
    if not root.is_dir():
        print(f"error: {root} is not a folder", file=sys.stderr)
        return 1
    config_dir = _config_dir(args)
    default = [
        p.name
        for p in sorted(root.iterdir())
        if p.is_dir() and (p.name in BUILTIN_TASKS or user_task_definition(p.name, config_dir))
    ]
    try:
        tasks = _tasks(args.tasks, default, config_dir)
    except TaskError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    problems = check_folder(root, tasks, args.splits)
    for problem in problems:
        print(f"PROBLEM {problem}")
    names = ", ".join(t.name for t in tasks)
    print(f"{len(problems)} problem(s) in {root} for tasks {names}" if problems else f"OK: {root} ({names})")
    return 1 if problems else 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``compt data snapshot`` and ``compt data check``."""
    data = subparsers.add_parser("data", help="prepare and check task data")
    config_help = "Hydra config folder whose tasks/<name>.yaml define user tasks (default: ./conf)"
    sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    snap = sub.add_parser("snapshot", help="download tasks from the hub into a local parquet folder")
    snap.add_argument("--tasks", nargs="+", help="task or set names, comma lists allowed (default: glue)")
    snap.add_argument("--out", required=True, help="output folder (<out>/<task>/<split>.parquet)")
    snap.add_argument(
        "--splits", nargs="+", help="splits to write (default: each task's train and eval split)"
    )
    snap.add_argument("--config-dir", default=None, help=config_help)
    snap.set_defaults(func=snapshot)

    chk = sub.add_parser("check", help="validate a local data folder; reports every problem, exit 1 if any")
    chk.add_argument("dir", help="folder laid out <dir>/<task>/<split>.{parquet,jsonl,csv}")
    chk.add_argument(
        "--tasks", nargs="+", help="task or set names (default: every folder in DIR naming a known task)"
    )
    chk.add_argument(
        "--splits", nargs="+", help="splits to check (default: each task's train and eval split)"
    )
    chk.add_argument("--config-dir", default=None, help=config_help)
    chk.set_defaults(func=check)
