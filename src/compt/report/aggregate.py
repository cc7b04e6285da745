"""Find the runs of one or more sweeps and group them over seeds: mean ± std (n) per task and on average.

A *run* is a folder holding a complete ``results.json`` (one that passes its schema); a *job* is any folder
Hydra made for one run (it has ``.hydra/``). Jobs without a complete ``results.json`` are reported as missing,
never silently dropped; diverged runs (``"status": "diverged"``) are listed apart and never averaged.
Runs are grouped by their *settings* — the command-line overrides that can change a result, minus the seed
(:func:`compt.runs.identity.group_overrides`: no logger, observe-only callback, claim, path, ``hydra.*``, ``force``),
plus ``method``, ``k`` and ``n_sources`` as the run recorded them — so runs that differ only by seed
(even from separate sweep folders) share a group.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from tqdm import tqdm

from compt.errors import IncompleteRunError, NoResultsError
from compt.prompts.methods import METHODS
from compt.runs import DIVERGED, HYDRA_DIR, HYDRA_OVERRIDES, RESULTS_FILE, RunDir
from compt.runs.identity import group_overrides

#: settings every run records in ``results.json`` itself (they win over the overrides)
RECORDED_KEYS = ("method", "k", "n_sources", "protocol")
#: the metric of the paper's reading when a results.json predates ``primary_paper``: accuracy, else spearman
PAPER_METRICS = ("accuracy", "spearman")
#: label columns that always come first in tables, in this order
LEADING_KEYS = ("method", "k")
AVG = "Avg."


@dataclass(frozen=True)
class Stat:
    """Mean, sample standard deviation (ddof = 1; NaN when n < 2) and count of a cell's values."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Stat:
        """Summarise ``values``, skipping ``None``/NaN (a metric a run could not compute)."""
        kept = [float(v) for v in values if v is not None and not math.isnan(float(v))]
        if not kept:
            return cls(math.nan, math.nan, 0)
        std = statistics.stdev(kept) if len(kept) > 1 else math.nan
        return cls(statistics.fmean(kept), std, len(kept))


@dataclass
class Run:
    """One finished run: its folder and its parsed ``results.json``."""

    path: Path
    results: dict[str, Any]

    @property
    def settings(self) -> dict[str, str]:
        """Overrides minus seed/hydra/force, plus the recorded method, k and n_sources (as strings)."""
        out = parse_overrides(self.results.get("overrides", []))
        for key in RECORDED_KEYS:
            if self.results.get(key) is not None:
                out[key] = str(self.results[key])
        return out

    @property
    def tasks(self) -> list[str]:
        return list(self.results.get("tasks") or self.results.get("primary", {}))


@dataclass
class MissingJob:
    """A job folder without a usable result, and why."""

    path: Path
    reason: str


@dataclass
class DivergedRun:
    """A run stopped by a non-finite loss or prompt: listed apart, never averaged."""

    path: Path
    reason: str


@dataclass
class Group:
    """Runs with identical settings (repeats over seeds)."""

    settings: dict[str, str]
    runs: list[Run] = field(default_factory=list)

    @property
    def key(self) -> str:
        return group_key(self.settings)

    @property
    def tasks(self) -> list[str]:
        """Tasks in the order of the first run, then any others the later runs add."""
        return list(dict.fromkeys(t for run in self.runs for t in run.tasks))

    @property
    def seeds(self) -> list[Any]:
        return [run.results.get("seed") for run in self.runs]

    def stat(self, column: str, mask: str | None = None, paper: bool = False) -> Stat:
        """``column`` is a task (its primary metric) or ``Avg.``; ``mask`` reads ``results.masks[mask]``;
        ``paper`` reads the paper's reading (accuracy, stsb spearman: ``primary_paper``/``avg_paper``)."""
        primary, avg = ("primary_paper", "avg_paper") if paper else ("primary", "avg")
        values = []
        for run in self.runs:
            source = run.results if mask is None else (run.results.get("masks") or {}).get(mask)
            if source is None:
                continue
            values.append(source.get(avg) if column == AVG else (source.get(primary) or {}).get(column))
        return Stat.of(values)

    def mean_of(self, tasks: Sequence[str], mask: str | None = None, paper: bool = False) -> Stat:
        """Each run's mean over ``tasks`` (None when one is missing), summarised over the runs: the Avg. of a
        subset of a run's tasks (a paper table that leaves a run's extra task out)."""
        means = []
        for run in self.runs:
            source = run.results if mask is None else (run.results.get("masks") or {}).get(mask)
            scores = (source or {}).get("primary_paper" if paper else "primary") or {}
            values = [scores.get(t) for t in tasks]
            means.append(None if any(v is None for v in values) else statistics.fmean(values))
        return Stat.of(means)

    def label(self, keys: Sequence[str]) -> dict[str, str]:
        """The values of ``keys`` for this group (``-`` where a setting is absent)."""
        return {key: self.settings.get(key, "-") for key in keys}


@dataclass
class Scan:
    """What a set of sweep folders holds."""

    roots: list[Path]
    runs: list[Run]
    missing: list[MissingJob]
    diverged: list[DivergedRun] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- reading
def parse_overrides(overrides: Iterable[str]) -> dict[str, str]:
    """``["method=ssum", "+x.y=1", "seed=2", "logger=csv"]`` -> ``{"method": "ssum", "x.y": "1"}``: the
    overrides of the run's group (:func:`compt.runs.identity.group_overrides`) as key -> value."""
    out: dict[str, str] = {}
    for item in group_overrides(overrides):
        key, sep, value = item.lstrip("+~").partition("=")
        if not sep:
            continue
        out[key] = value
    return out


def group_key(settings: dict[str, str]) -> str:
    """A stable string naming a group: its sorted settings joined by commas."""
    return ",".join(f"{k}={v}" for k, v in sorted(settings.items())) or "default"


def job_folders(root: Path) -> tuple[list[Path], list[Path]]:
    """``(results files, job folders)`` under ``root``, recursively; a job folder is one with ``.hydra/``."""
    results = sorted(root.rglob(RESULTS_FILE))
    jobs = sorted(p.parent for p in root.rglob(HYDRA_DIR) if p.is_dir())
    return results, jobs


def read_run(path: Path) -> Run | MissingJob | DivergedRun:
    """Parse one ``results.json``: a :class:`Run`, a :class:`DivergedRun`, or (unreadable, unfinished or
    damaged) a :class:`MissingJob`."""
    folder = RunDir(path.parent)
    try:
        return Run(path.parent, with_paper_reading(folder.valid_results()))
    except IncompleteRunError as err:
        if folder.is_diverged():
            diverged = folder.read_results().get("diverged") or {}
            return DivergedRun(
                path.parent, f"diverged at step {diverged.get('step')}: {diverged.get('message')}"
            )
        return MissingJob(path.parent, str(err))


def with_paper_reading(results: dict[str, Any]) -> dict[str, Any]:
    """``results`` with ``primary_paper``/``avg_paper``; a results.json written before they existed gets them
    from its per-task metrics (accuracy, else spearman: the paper's reading)."""
    if "primary_paper" in results or not isinstance(results.get("metrics"), dict):
        return results
    paper = {}
    for task, values in results["metrics"].items():
        name = next((m for m in PAPER_METRICS if m in (values or {})), None)
        if name is not None:
            paper[task] = values[name]
    avg = statistics.fmean(paper.values()) if paper and len(paper) == len(results["metrics"]) else None
    return {**results, "primary_paper": paper, "avg_paper": avg}


def job_overrides(job: Path) -> list[str] | None:
    """A job folder's overrides (``.hydra/overrides.yaml``), or None."""
    try:
        return list(yaml.safe_load((RunDir(job).hydra_dir / HYDRA_OVERRIDES).read_text()) or [])
    except (OSError, ValueError, yaml.YAMLError):
        return None


def never_started(root: Path, runs: Sequence[Run], jobs: Sequence[Path]) -> list[MissingJob]:
    """Jobs of ``root``'s sweep that have no folder at all (the sweep stopped before launching them), from
    the records of every launch into it (:func:`compt.sweeps.records.expected_jobs`)."""
    from compt.sweeps.records import expected_jobs

    seen = {frozenset(r.results.get("overrides", [])) for r in runs}
    seen |= {frozenset(o) for o in map(job_overrides, jobs) if o is not None}
    return [
        MissingJob(root, f"never started (launched into this sweep folder): {','.join(job)}")
        for job in expected_jobs(root)
        if frozenset(job) not in seen
    ]


def scan(roots: Sequence[str | Path], progress: bool | None = None) -> Scan:
    """Read every ``results.json`` under ``roots`` and list the job folders that have none.

    Raises:
        NoResultsError: a root does not exist or holds no complete result (the message names it).
    """
    paths = [Path(r) for r in roots]
    runs: list[Run] = []
    missing: list[MissingJob] = []
    diverged: list[DivergedRun] = []
    for root in paths:
        if not root.is_dir():
            raise NoResultsError(f"{root}: no such folder")
        result_files, jobs = job_folders(root)
        found: list[Run] = []
        for path in tqdm(
            result_files,
            desc=f"reading {root.name or root}",
            unit="run",
            disable=None if progress is None else not progress,
        ):
            item = read_run(path)
            if isinstance(item, Run):
                found.append(item)
            elif isinstance(item, DivergedRun):
                diverged.append(item)
            else:
                missing.append(item)
        have = {p.parent for p in result_files}
        missing.extend(
            MissingJob(job, f"no {RESULTS_FILE} (not run yet, still running, or failed)")
            for job in jobs
            if job not in have
        )
        missing.extend(never_started(root, found, jobs))
        if not found:
            stopped = sum(d.path.is_relative_to(root) for d in diverged)
            raise NoResultsError(
                f"{root}: no complete {RESULTS_FILE} found under this folder "
                f"({len(jobs)} job folder(s), {len(result_files)} results file(s)"
                + (f", {stopped} of them {DIVERGED}" if stopped else "")
                + "). Is it a sweep folder (hydra.sweep.dir) whose jobs have finished?"
            )
        runs.extend(found)
    runs, repeats = unique_jobs(runs)
    missing.extend(repeats)
    return Scan(paths, runs, sorted(missing, key=_path_text), sorted(diverged, key=_path_text))


def unique_jobs(runs: Sequence[Run]) -> tuple[list[Run], list[MissingJob]]:
    """One run per job: runs with the same settings, seed and tasks (one job launched again under another
    folder name, by a compt that still named folders after the logger or a progress bar) are counted once,
    the first by path; the others are listed, never averaged as further seeds."""
    kept: dict[tuple[str, str, tuple[str, ...]], Run] = {}
    repeats = []
    for run in sorted(runs, key=lambda r: str(r.path)):
        key = (group_key(run.settings), str(run.results.get("seed")), tuple(run.tasks))
        if key in kept:
            reason = f"left out: the same job (settings, seed, tasks) as {kept[key].path}"
            repeats.append(MissingJob(run.path, reason))
        else:
            kept[key] = run
    first = {id(run) for run in kept.values()}
    return [run for run in runs if id(run) in first], repeats


def _path_text(item: MissingJob | DivergedRun) -> str:
    return str(item.path)


# ---------------------------------------------------------------------------------------------- grouping
def group_runs(runs: Iterable[Run]) -> list[Group]:
    """Runs grouped by settings, sorted by method (compt's order), k, then the other settings."""
    groups: dict[str, Group] = {}
    for run in runs:
        settings = run.settings
        groups.setdefault(group_key(settings), Group(settings)).runs.append(run)
    return sorted(groups.values(), key=lambda g: sort_key(g.settings))


def varying_keys(groups: Sequence[Group]) -> list[str]:
    """Settings whose value differs between groups: method and k first, the rest alphabetical."""
    keys = {k for g in groups for k in g.settings}
    varying = {k for k in keys if len({g.settings.get(k) for g in groups}) > 1}
    rest = sorted(varying - set(LEADING_KEYS))
    return [k for k in LEADING_KEYS if k in varying] + rest


def label_keys(groups: Sequence[Group]) -> list[str]:
    """Row-label columns of a table: method and k always (as the paper's tables), then what else varies."""
    return list(LEADING_KEYS) + [k for k in varying_keys(groups) if k not in LEADING_KEYS]


def natural(value: str | None) -> tuple[int, float, str]:
    """Sort numbers numerically and before text."""
    if value is None:
        return (2, 0.0, "")
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def sort_key(settings: dict[str, str]) -> tuple:
    method = settings.get("method", "")
    order = METHODS.index(method) if method in METHODS else len(METHODS)
    rest = tuple(natural(settings[k]) for k in sorted(settings) if k not in LEADING_KEYS)
    return (order, method, natural(settings.get("k")), rest)


def series_label(settings: dict[str, str], keys: Sequence[str]) -> str:
    """``"method=ssum, k=8"`` from the given keys (empty keys -> ``"all runs"``)."""
    return ", ".join(f"{k}={settings.get(k, '-')}" for k in keys) or "all runs"


def slug(text: str) -> str:
    """A file-name-safe version of ``text``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "all"
