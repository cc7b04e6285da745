"""What each launch of a sweep asked for, kept in its folder.

Hydra's basic sweeper writes ``<sweep dir>/multirun.yaml`` (the launch's config, with its sweep overrides) at
every launch, so two sweeps sharing a folder (``name=s`` with other overrides) would keep only the last one's
job list. :class:`KeepLaunchRecord` (a Hydra callback, ``conf/hydra/default.yaml``) also writes each distinct
launch's config to ``<sweep dir>/.compt-launches/<digest>.yaml`` (named after the sweeper and its overrides, so
relaunching a command adds nothing). :func:`expected_jobs` reads them all: ``compt report`` lists the jobs of
every launch that never started, and a sweep stopped by a signal names its own (:func:`never_started`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from compt.utils import share_like_new_file

#: Hydra's record of the last launch, and compt's folder of every launch's
MULTIRUN_FILE = "multirun.yaml"
LAUNCHES_DIR = ".compt-launches"


class KeepLaunchRecord(Callback):
    """Hydra callback: at the start of a ``-m`` launch, keep its config in ``.compt-launches/``."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        keep_launch_record(config)


def keep_launch_record(config: DictConfig) -> Path:
    """Write this launch's config (as Hydra's ``multirun.yaml``, unresolved) to ``.compt-launches/`` of its
    sweep folder, unless a launch with the same sweeper and overrides did already; returns the file."""
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweeper = str(OmegaConf.select(config, "hydra.sweeper._target_", default=""))
    overrides = [str(o) for o in OmegaConf.select(config, "hydra.overrides.task", default=[]) or []]
    digest = hashlib.sha256(json.dumps([sweeper, overrides]).encode()).hexdigest()[:12]
    path = sweep_dir / LAUNCHES_DIR / f"{digest}.yaml"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(handle, "w") as out:
            out.write(OmegaConf.to_yaml(config))
        share_like_new_file(partial)
        os.replace(partial, path)
    return path


def launch_records(root: Path) -> list[Path]:
    """Every launch record of a sweep folder: Hydra's ``multirun.yaml`` (the last launch) and compt's."""
    records = [root / MULTIRUN_FILE] if (root / MULTIRUN_FILE).is_file() else []
    return records + sorted((root / LAUNCHES_DIR).glob("*.yaml"))


def record_jobs(path: Path) -> list[list[str]]:
    """The override lists of every job Hydra's basic sweeper launches for the record ``path``, in its order
    (empty for another sweeper, e.g. Optuna's, whose jobs are not known in advance, or an unusual file)."""
    try:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser

        hydra = yaml.safe_load(path.read_text())["hydra"]
        if "BasicSweeper" not in str(hydra.get("sweeper", {}).get("_target_", "")):
            return []
        parsed = OverridesParser.create().parse_overrides(hydra["overrides"]["task"])
        return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
    except Exception:  # an unusual sweep file: the job folders still tell what is missing
        return []


def expected_jobs(root: Path) -> list[list[str]]:
    """The jobs of every launch into ``root`` (each once, in launch-record order)."""
    seen: set[frozenset[str]] = set()
    jobs = []
    for record in launch_records(root):
        for job in record_jobs(record):
            if frozenset(job) not in seen:
                seen.add(frozenset(job))
                jobs.append(job)
    return jobs


def never_started(sweep_dir: Path, job_num: int) -> str | None:
    """The jobs the current basic-sweeper launch into ``sweep_dir`` (its ``multirun.yaml``) would have run
    after job number ``job_num`` (those a stopped sweep never started), shown by the overrides that vary
    between the launch's jobs: ``2 job(s): seed=2; seed=3``; None when there are none."""
    jobs = record_jobs(sweep_dir / MULTIRUN_FILE)
    later = jobs[job_num + 1 :]
    if not later:
        return None
    common = set.intersection(*(set(job) for job in jobs))
    limit = 5
    names = [",".join(o for o in job if o not in common) or ",".join(job) for job in later[:limit]]
    more = f" and {len(later) - limit} more" if len(later) > limit else ""
    return f"{len(later)} job(s): " + "; ".join(names) + more
