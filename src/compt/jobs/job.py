"""One job of ``train.py`` (a single run or one job of a sweep), from launch to result.

:func:`run_job` is what ``train.py`` calls: it refuses a config or folder that cannot work (one line), skips a
finished job, claims the folder (:mod:`compt.runs.claims`; a job another live process trains is skipped with one
notice), repairs what an interrupted or damaged run left (:mod:`compt.jobs.recovery`), applies
``force=true`` once, runs the recipe of the job's method (:func:`compt.recipes.recipe_for`: one fit, SPoT's
stages, ``pt_single``'s tasks, ...), and turns a diverged run into :class:`~compt.errors.RunDiverged` once its
results.json is written.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from compt.config.schema import TrainSchema
from compt.errors import RunDiverged
from compt.jobs.preflight import OTHER_FOLDER, check_run_config, require_writable
from compt.jobs.recovery import discard_finished_checkpoint, repair, start_forced_run
from compt.runs import DIVERGED, RunDir, finished
from compt.runs.claims import Holder, claim_job, read_holder, stale_reason
from compt.runtime.stopping import StopRequest, stop_request
from compt.training.spawn import launch_rank

log = logging.getLogger(__name__)


def run_job(cfg: TrainSchema, output_dir: str | Path, overrides: list[str]) -> dict[str, Any] | None:
    """Train the job in ``output_dir`` unless it is finished or another process trains it; its results.json
    (None when skipped). SIGTERM, SIGUSR1 and SIGINT stop it cleanly (:mod:`compt.runtime.stopping`).

    Raises:
        ComptError: a config value or folder that cannot work (before anything is loaded).
        RunDiverged: the run diverged (its results.json, status ``diverged``, is written).
        RunInterrupted: a stop signal ended the job (the message says what was saved); a signal that came
            while the job wrote its outputs ends it once they are written.
        ClaimLost: another process took the job's claim over; nothing more was written.
    """
    stop = stop_request()
    stop.begin(output_dir)
    with stop.handling():
        results = _run_job(cfg, RunDir(output_dir), overrides, stop)
        stop.outside = "after it finished (its results.json is written)"
        if stop.signalled:
            raise stop.interrupted(stop.outside)
    return results


def _run_job(cfg: TrainSchema, run: RunDir, overrides: list[str], stop: StopRequest) -> dict[str, Any] | None:
    heartbeat_s, stale_after_s = cfg.claim.heartbeat_s, cfg.claim.stale_after_s
    if launch_rank() > 0:  # a DDP rank > 0: rank 0 claimed and repaired the folder they share
        holder = foreign_claim(run, stale_after_s)
        if holder is not None:
            log.info(
                "[compt] %s is being trained by another job (%s); skipping it.", run.path, holder.describe()
            )
            return None
        return _train(cfg, run, overrides)
    check_run_config(cfg)
    require_writable(run.path, OTHER_FOLDER)
    require_writable(run.last_checkpoint.parent, OTHER_FOLDER)
    if not cfg.force and finished(run):  # says why it skips; no claim needed, nor the run driver (seconds)
        return None
    with claim_job(run.path, heartbeat_s, stale_after_s, on_lost=stop.claim_lost) as claim:
        if not claim.held:
            who = claim.holder.describe() if claim.holder else "another process"
            log.info("[compt] %s is being trained by another process (%s); skipping it.", run.path, who)
            return None
        stop.watch(claim)
        results = _train_claimed(cfg, run, overrides)
    if results and results.get("status") == DIVERGED:
        diverged = results.get("diverged") or {}
        raise RunDiverged(f"{run.path}: {diverged.get('message')}", int(diverged.get("step", -1)))
    return results


def _train_claimed(cfg: TrainSchema, run: RunDir, overrides: list[str]) -> dict[str, Any] | None:
    """Repair, apply ``force`` once (a forced run in progress resumes), train, and clear the forced mark once
    the job is finished."""
    repair(run)
    if cfg.force and not run.forced_marker.exists() and run.check().finished:
        start_forced_run(run)
    results = _train(without_force(cfg), run, overrides)
    if run.check().finished:
        run.forced_marker.unlink(missing_ok=True)
    return results


def _train(cfg: TrainSchema, run: RunDir, overrides: list[str]) -> dict[str, Any] | None:
    """The recipe of the job's method in its folder, unless the run is finished (skipped, said in the log)."""
    if cfg.force and run.check().finished:  # a DDP rank > 0 under force=true (rank 0 removes the rest)
        discard_finished_checkpoint(run)
    elif finished(run):
        return None
    # the run driver (Lightning, transformers: seconds to import), once the job trains
    from compt.recipes import recipe_for

    return recipe_for(cfg.method.name)(without_force(cfg), run.path, overrides)


def without_force(cfg: TrainSchema) -> TrainSchema:
    """``cfg`` with ``force=false``: once the job applied it, the run (and its sub-runs) just train."""
    return replace(cfg, force=False) if cfg.force else cfg


def foreign_claim(run: RunDir, stale_after_s: float) -> Holder | None:
    """For a rank > 0 that SLURM started: the live claim of another SLURM job on this folder (its rank 0
    skips the job, so this rank must too), else None."""
    me = Holder.this_process()
    holder = read_holder(run.claim_file)
    if holder is None or not me.slurm_job or holder.slurm_job in (None, me.slurm_job):
        return None
    try:
        age = time.time() - os.stat(run.claim_file).st_mtime
    except FileNotFoundError:
        return None
    return holder if stale_reason(holder, age, me, stale_after_s) is None else None
