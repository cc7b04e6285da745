"""The jobs of a sweep, listed without running anything: ``compt sweep list table1 [overrides]``.

A sweep is ``conf/sweep/<name>.yaml`` (launched with ``python train.py -m +sweep=<name> [overrides]``). The
jobs are expanded exactly as Hydra's basic sweeper does (``hydra.sweeper.params`` first, then the command
line, later values of a key winning) and each job's folder is composed through the Hydra compose API, so the
folders printed are those a real launch writes to. Each line also says what a launch would do there:
``done`` (complete results.json: skipped), ``resume`` (checkpoints/last.ckpt: resumed) or ``new``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from compt.config_dir import default_config_dir
from compt.training.launch import register_job_folder_resolver
from compt.training.results import is_complete

CHECKPOINT = Path("checkpoints") / "last.ckpt"


@dataclass(frozen=True)
class Job:
    """One job of a sweep: its overrides (as given to ``train.py``) and its output folder."""

    overrides: tuple[str, ...]
    folder: Path

    @property
    def status(self) -> str:
        """``done`` | ``resume`` | ``new``: what relaunching the sweep does with this job."""
        if is_complete(self.folder):
            return "done"
        return "resume" if (self.folder / CHECKPOINT).is_file() else "new"


def sweep_names(config_dir: Path | None = None) -> list[str]:
    """The sweeps defined in ``conf/sweep/``."""
    return sorted(p.stem for p in ((config_dir or default_config_dir()) / "sweep").glob("*.yaml"))


def expand(
    sweep: str | None, overrides: Sequence[str] = (), config_dir: Path | None = None
) -> list[list[str]]:
    """Every job's overrides, as the basic sweeper builds them (cartesian product, in its order)."""
    with _hydra(config_dir):
        return _expand(_arguments(sweep, overrides))


def _arguments(sweep: str | None, overrides: Sequence[str]) -> list[str]:
    return ([f"+sweep={sweep}"] if sweep else []) + list(overrides)


def _hydra(config_dir: Path | None) -> initialize_config_dir:
    register_job_folder_resolver()
    return initialize_config_dir(
        str(config_dir or default_config_dir()), version_base="1.3", job_name="train"
    )


def _expand(args: list[str]) -> list[list[str]]:
    """Hydra overrides are kept as they are in every job; the task overrides are swept."""
    parser = OverridesParser.create()
    parsed = parser.parse_overrides(args)
    cfg = compose(
        "train",
        overrides=[o.input_line for o in parsed if not o.is_sweep_override()],
        return_hydra_config=True,
    )
    params = [f"{key}={value}" for key, value in (cfg.hydra.sweeper.params or {}).items()]
    task_args = [o.input_line for o in parsed if not o.is_hydra_override()]
    hydra_args = [o.input_line for o in parsed if o.is_hydra_override()]
    jobs = BasicSweeper.split_arguments(parser.parse_overrides(params + task_args), None)[0]
    return [hydra_args + job for job in jobs]


def list_jobs(sweep: str | None, overrides: Sequence[str] = (), config_dir: Path | None = None) -> list[Job]:
    """The jobs of ``python train.py -m [+sweep=<sweep>] <overrides>`` with their output folders."""
    with _hydra(config_dir):
        jobs = []
        for job in _expand(_arguments(sweep, overrides)):
            cfg = compose("train", overrides=job, return_hydra_config=True)
            folder = Path(cfg.hydra.sweep.dir) / str(cfg.hydra.sweep.subdir)
            jobs.append(Job(tuple(job), folder))
    return jobs


# ---------------------------------------------------------------------------------------------- CLI
def _list(args: argparse.Namespace) -> int:
    config_dir = Path(args.config_dir) if args.config_dir else None
    if args.sweep not in sweep_names(config_dir):
        print(f"unknown sweep {args.sweep!r}; defined: {', '.join(sweep_names(config_dir))}", file=sys.stderr)
        return 2
    jobs = list_jobs(args.sweep, args.overrides, config_dir)
    for job in jobs:
        print(f"{job.status:<6} {job.folder}")
    counts = {s: sum(j.status == s for j in jobs) for s in ("done", "resume", "new")}
    print(
        f"{len(jobs)} jobs: {counts['done']} done, {counts['resume']} to resume, {counts['new']} new. "
        f"Launch: python train.py -m +sweep={args.sweep} {' '.join(args.overrides)}".rstrip(),
        file=sys.stderr,
    )
    return 0


def _names(args: argparse.Namespace) -> int:
    print("\n".join(sweep_names(Path(args.config_dir) if args.config_dir else None)))
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """``compt sweep list <name> [overrides]`` and ``compt sweep names``."""
    _configure(subparsers.add_parser("sweep", help="list the jobs of a paper experiment's sweep (dry run)"))


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config-dir", default=None, help="Hydra config folder (default: ./conf)")
    sub = parser.add_subparsers(dest="sweep_command", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="one line per job: status (done|resume|new) and folder")
    listing.add_argument("sweep", help="a conf/sweep/<name>.yaml, e.g. table1")
    listing.add_argument("overrides", nargs="*", help="extra overrides, as for train.py -m")
    listing.set_defaults(func=_list)
    sub.add_parser("names", help="the sweeps defined in conf/sweep/").set_defaults(func=_names)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m compt.sweeps list table1 [overrides]``."""
    parser = argparse.ArgumentParser(prog="python -m compt.sweeps", description=__doc__.splitlines()[0])
    _configure(parser)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
