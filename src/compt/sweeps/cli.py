"""``compt sweep list <name> [overrides]`` and ``compt sweep names``; also ``python -m compt.sweeps``.

Argument wiring only (the library: :mod:`compt.sweeps.jobs`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import compt.cli


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``compt sweep``."""
    parser = subparsers.add_parser("sweep", help="list the jobs of a paper experiment's sweep (dry run)")
    parser.add_argument("--config-dir", default=None, help="Hydra config folder (default: ./conf)")
    sub = parser.add_subparsers(dest="sweep_command", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="one line per job: status (done|diverged|resume|new) and folder")
    listing.add_argument("sweep", help="a conf/sweep/<name>.yaml, e.g. table1")
    listing.add_argument("overrides", nargs="*", help="extra overrides, as for train.py -m")
    listing.set_defaults(func=list_command)
    sub.add_parser("names", help="the sweeps defined in conf/sweep/").set_defaults(func=names_command)


def _config_dir(args: argparse.Namespace) -> Path | None:
    return Path(args.config_dir) if args.config_dir else None


def list_command(args: argparse.Namespace) -> int:
    from compt.sweeps.jobs import list_jobs

    jobs = list_jobs(args.sweep, args.overrides, _config_dir(args))
    for job in jobs:
        print(f"{job.status:<8} {job.folder}")
    counts = {s: sum(j.status == s for j in jobs) for s in ("done", "diverged", "resume", "new")}
    print(
        f"{len(jobs)} jobs: {counts['done']} done, {counts['diverged']} diverged, {counts['resume']} to "
        f"resume, {counts['new']} new. "
        f"Launch: python train.py -m +sweep={args.sweep} {' '.join(args.overrides)}".rstrip(),
        file=sys.stderr,
    )
    return 0


def names_command(args: argparse.Namespace) -> int:
    from compt.sweeps.jobs import sweep_names

    print("\n".join(sweep_names(_config_dir(args))))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m compt.sweeps list table1 [overrides]`` = ``compt sweep list table1 [overrides]``."""
    return compt.cli.main(["sweep", *(sys.argv[1:] if argv is None else argv)])
