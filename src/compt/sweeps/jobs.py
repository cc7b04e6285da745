"""The jobs of a sweep, listed without running anything (the library behind ``compt sweep list``).

A sweep is ``conf/sweep/<name>.yaml`` (launched with ``python train.py -m +sweep=<name> [overrides]``). The
jobs are expanded exactly as Hydra's basic sweeper does (``hydra.sweeper.params`` first, then the command
line, later values of a key winning) and each job's folder is composed through the Hydra compose API, so the
folders printed are those a real launch writes to. Each line also says what a launch would do there:
``done`` (complete results.json and bank: skipped), ``diverged`` (skipped unless force=true), ``resume``
(checkpoints/last.ckpt: resumed) or ``new``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from compt.config.hydra import register_config
from compt.config_dir import default_config_dir
from compt.errors import ConfigError
from compt.runs import JobStatus, RunDir


@dataclass(frozen=True)
class Job:
    """One job of a sweep: its overrides (as given to ``train.py``) and its output folder."""

    overrides: tuple[str, ...]
    folder: Path

    @property
    def status(self) -> JobStatus:
        """``done`` | ``diverged`` | ``resume`` | ``new``: what relaunching the sweep does with this job
        (:meth:`RunDir.check`: a damaged results.json or bank is not ``done``)."""
        return RunDir(self.folder).check().status


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
    register_config()
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
    sweeper = str(cfg.hydra.sweeper.get("_target_", ""))
    if not sweeper.endswith("BasicSweeper"):
        raise ConfigError(
            f"the jobs of this sweep are not known in advance ({sweeper.rsplit('.', 1)[-1]} draws them as it "
            "runs, e.g. hparams_search=optuna); its finished trials are the folders of its sweep directory"
        )
    params = [f"{key}={value}" for key, value in (cfg.hydra.sweeper.params or {}).items()]
    task_args = [o.input_line for o in parsed if not o.is_hydra_override()]
    hydra_args = [o.input_line for o in parsed if o.is_hydra_override()]
    jobs = BasicSweeper.split_arguments(parser.parse_overrides(params + task_args), None)[0]
    return [hydra_args + job for job in jobs]


def list_jobs(sweep: str | None, overrides: Sequence[str] = (), config_dir: Path | None = None) -> list[Job]:
    """The jobs of ``python train.py -m [+sweep=<sweep>] <overrides>`` with their output folders.

    Raises:
        ConfigError: ``sweep`` is not defined in ``conf/sweep/``.
    """
    known = sweep_names(config_dir)
    if sweep is not None and sweep not in known:
        raise ConfigError(f"unknown sweep {sweep!r}; defined: {', '.join(known)}")
    with _hydra(config_dir):
        jobs = []
        for job in _expand(_arguments(sweep, overrides)):
            cfg = compose("train", overrides=job, return_hydra_config=True)
            folder = Path(cfg.hydra.sweep.dir) / str(cfg.hydra.sweep.subdir)
            jobs.append(Job(tuple(job), folder))
    return jobs
