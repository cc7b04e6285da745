"""Repairing a job folder before a launch trains in it (under the job's claim): what an interrupted or damaged
run left behind is removed or moved aside, so the launch finishes the job from what is whole.

- temporary files of interrupted atomic writes (``.results.json.XXXX``, ``*.tmp``) are removed;
- a ``last.ckpt`` that is not a whole checkpoint (empty, truncated, overwritten: its zip archive or a
  member's CRC fails) is moved aside as ``last.ckpt.corrupt-<time>`` and the job restarts from scratch (compt
  keeps no earlier checkpoint to fall back to);
- a results.json that fails its schema, or sits beside a damaged ``bank/``, is moved aside as
  ``results.json.damaged-<time>``: the launch then finishes the job from ``last.ckpt`` (re-test, rewrite
  bank and results) or trains it again;
- ``force=true`` on a finished (or diverged) job removes its results.json, checkpoints, predictions and bank
  first, then marks the folder forced (``.compt-forced``), so a requeue of the forced run resumes it instead of starting over.

Each change is one warning line in the run's log.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
import zipfile
from pathlib import Path

from compt.atomic import write_text_atomic
from compt.prompts.bank import CONFIG_FILE as BANK_CONFIG_FILE
from compt.runs import (
    BANK_DIR,
    LAST_CHECKPOINT,
    LOGGER_DIRS,
    MASK_PREDICTIONS_FILE,
    PREDICTIONS_FILE,
    RESULTS_FILE,
    RunDir,
)

log = logging.getLogger(__name__)


def checkpoint_problem(path: Path) -> str | None:
    """Why a checkpoint file cannot be resumed from (None: it is whole). ``torch.save`` writes a zip archive
    with a CRC per member: every member is read and checked, which catches empty, truncated and overwritten
    files without unpickling anything."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    return None if bad is None else f"member {bad} fails its CRC check"


def set_aside(path: Path, label: str) -> Path:
    """Rename ``path`` to ``<name>.<label>-<time>`` next to it; returns the new path."""
    target = path.with_name(f"{path.name}.{label}-{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(path, target)
    return target


def run_folders(run: RunDir, name: str) -> list[Path]:
    """Files called ``name`` in the run folder and its sub-runs (SPoT's stage 1, single-task runs), outside
    logger folders."""
    found = []
    for root, dirs, files in os.walk(run.path):
        dirs[:] = [d for d in dirs if d not in LOGGER_DIRS]
        if name in files:
            found.append(Path(root) / name)
    return sorted(found)


def remove_temp_files(run: RunDir) -> None:
    stale = run.temp_files()
    for path in stale:
        path.unlink(missing_ok=True)
    if stale:
        shown = ", ".join(str(p.relative_to(run.path)) for p in stale)
        log.warning(
            "[compt] warning: removed %d temporary file(s) of an interrupted write: %s", len(stale), shown
        )


def set_aside_damaged_checkpoints(run: RunDir) -> None:
    for path in run_folders(run, LAST_CHECKPOINT) if run.path.is_dir() else []:
        problem = checkpoint_problem(path)
        if problem is not None:
            moved = set_aside(path, "corrupt")
            log.warning(
                "[compt] warning: %s is damaged (%s); moved aside to %s; that run restarts from scratch",
                path,
                problem,
                moved.name,
            )


def set_aside_damaged_results(run: RunDir) -> None:
    for path in run_folders(run, RESULTS_FILE) if run.path.is_dir() else []:
        folder = RunDir(path.parent)
        problem = folder.check().problem
        if problem is not None:
            moved = set_aside(path, "damaged")
            then = "finished from its last.ckpt" if folder.last_checkpoint.is_file() else "trained again"
            log.warning(
                "[compt] warning: %s: %s; moved aside to %s; the job is %s",
                folder.path,
                problem,
                moved.name,
                then,
            )


def repair(run: RunDir) -> None:
    """Every repair above except ``force`` (checkpoints before results: whether a job can be finished
    depends on its checkpoint)."""
    remove_temp_files(run)
    set_aside_damaged_checkpoints(run)
    set_aside_damaged_results(run)


def start_forced_run(run: RunDir) -> None:
    """``force=true`` on a finished job: remove its results.json, resume checkpoints, predictions and banks
    (sub-runs included: nothing of the old run stays beside the new one), then mark the folder forced. (In
    this order: a kill in between leaves a job without results, which the next launch trains from scratch
    anyway.)"""
    for path in [*run_folders(run, RESULTS_FILE), *run_folders(run, LAST_CHECKPOINT)]:
        path.unlink(missing_ok=True)
    for path in [*run_folders(run, PREDICTIONS_FILE), *run_folders(run, MASK_PREDICTIONS_FILE)]:
        path.unlink(missing_ok=True)
    for path in run_folders(run, BANK_CONFIG_FILE):
        if path.parent.name == BANK_DIR:
            shutil.rmtree(path.parent, ignore_errors=True)
    record = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}
    write_text_atomic(run.forced_marker, json.dumps(record) + "\n")
    log.info(
        "[compt] force=true: removed the finished run's results, checkpoints and bank; training starts from scratch"
    )


def discard_finished_checkpoint(run: RunDir) -> None:
    """``force=true`` on a finished run seen by a DDP rank > 0: remove its final ``last.ckpt`` so that training
    starts from scratch (the re-run would otherwise "resume" at the last step and only re-test it)."""
    last = run.last_checkpoint
    if last.is_file():
        last.unlink(missing_ok=True)
        log.info("[compt] force=true: removed the finished run's %s; training starts from scratch", last)
