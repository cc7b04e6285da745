"""``compt data``: ``snapshot`` (hub -> local parquet folder) and ``check`` (validate a local folder).

Argument wiring only (the library: :mod:`compt.data.folder`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from compt.config_dir import default_config_dir


def _config_dir(args: argparse.Namespace) -> Path:
    return Path(args.config_dir) if args.config_dir else default_config_dir()


def _task_names(value: list[str] | None, default: list[str]) -> list[str]:
    """Task names, set names or comma lists as typed (``--tasks glue``, ``--tasks rte,mrpc imdb``)."""
    return [s.strip() for v in (value or default) for s in v.split(",") if s.strip()]


def snapshot(args: argparse.Namespace) -> int:
    """Write ``<out>/<task>/<split>.parquet`` from the hub for every requested task and split."""
    from compt.data.folder import snapshot as write_snapshot
    from compt.tasks import resolve_task_names

    tasks = resolve_task_names(_task_names(args.tasks, ["glue"]), _config_dir(args))
    written, failures = write_snapshot(tasks, args.out, args.splits)
    for failure in failures:
        print(f"error: {failure}", file=sys.stderr)
    if not failures:
        print(
            f"wrote {len(written)} split(s) to {args.out}; train with data.source=local data.dir={args.out}"
        )
    return 1 if failures else 0


def check(args: argparse.Namespace) -> int:
    """Validate a local folder against the task definitions (built-in and ``conf/tasks/<name>.yaml``); print
    every problem and warning; exit 1 if there is any problem (warnings alone exit 0)."""
    import datasets

    from compt.data.folder import inspect_folder, known_task_folders
    from compt.tasks import resolve_task_names

    datasets.disable_progress_bars()
    root = Path(args.dir)
    if not root.is_dir():
        print(f"error: {root} is not a folder", file=sys.stderr)
        return 1
    config_dir = _config_dir(args)
    tasks = resolve_task_names(_task_names(args.tasks, known_task_folders(root, config_dir)), config_dir)
    problems, warnings = inspect_folder(root, tasks, args.splits)
    for problem in problems:
        print(f"PROBLEM {problem}")
    for warning in warnings:
        print(f"WARNING {warning}")
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
