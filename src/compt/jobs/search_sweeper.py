"""compt's Optuna sweeper (``hparams_search=optuna``): Hydra's Optuna sweeper, with a study that stays true when
searches are interrupted, relaunched, or run twice at once.

The study (``<sweep dir>/optuna.db``) holds one row per trial; ``hydra.sweeper.n_trials`` is the number of
trials the search has in all, so relaunching the same command continues it instead of adding rows:

- **Who runs a trial** is a claim (:mod:`compt.runs.claims`) on ``<sweep dir>/.compt-trials/<number>/``, taken when
  the trial is asked for and released when its result is told. Asking happens under a claim on
  ``.compt-trials/ask`` (one process at a time), so two searches started at once share the trials out instead
  of both running the same ones.
- **Interrupted trials** are marked: a job stopped by a signal is told ``FAIL`` with the user attribute
  ``compt_interrupted`` (the job's ``compt:`` line) at once; a trial left ``RUNNING`` by a process that died
  (SIGKILL, a lost node: its claim is stale) is marked so by the next launch. That launch re-runs each
  interrupted trial first, with the same parameters (so the same job folder: it resumes from its
  ``last.ckpt``), as a new row.
- **Same trials, interrupted or not**: before each new trial the sampler is created anew with a seed derived
  from ``sampler.seed`` and the trial's position in the search (interrupted rows not counted), so a search
  relaunched after an interruption proposes exactly the trials an uninterrupted one would have.
- **A trial whose job folder another process holds** (its job was skipped) is not failed: its result is read
  from the folder once that process has finished it.

``optimization_results.yaml`` is written whenever the search ends, interrupted or not, from the trials
complete so far (``trials_complete``: how many).
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import logging
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import optuna
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl, create_params_from_overrides
from omegaconf import OmegaConf
from optuna.trial import FrozenTrial, Trial, TrialState

from compt.runs import RunDir
from compt.runs.claims import HEARTBEAT_S, STALE_AFTER_S, JobClaim, timing_problem
from compt.runtime.stopping import JobStopped

log = logging.getLogger(__name__)

#: the claims on trials, and the one that serialises asking, in the sweep folder
TRIALS_DIR = ".compt-trials"
ASK_LOCK = "ask"
#: the lock two searches starting at once take in turn to create (or open) the study's storage
STUDY_LOCK = ".compt-study.lock"
#: the user attribute of an interrupted trial (the reason)
INTERRUPTED = "compt_interrupted"
#: how often a search waits for a trial another process holds, or for its turn to ask (seconds)
POLL_S = 2.0


@contextmanager
def study_creation_lock(sweep_dir: Path) -> Iterator[None]:
    """Hold ``<sweep dir>/.compt-study.lock`` (an exclusive ``flock``): Optuna's sqlite storage, created by two
    processes at the same moment, fails in one of them (alembic's version row inserted twice)."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with (sweep_dir / STUDY_LOCK).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class ComptOptunaSweeperImpl(OptunaSweeperImpl):
    """The plugin's sweeper with the bookkeeping above; its own ``sweep`` loop, the plugin's helpers."""

    def sweep(self, arguments: list[str]) -> None:
        assert self.config is not None and self.launcher is not None
        if isinstance(self.sampler, functools.partial):  # the grid sampler, built from the search space
            raise SystemExit(
                "compt: hparams_search=optuna with the grid sampler: a grid is a sweep; run it with -m over the "
                "values instead (python train.py -m optim.lr.router=0.01,0.1 ...)"
            )
        self._process_searchspace_config()
        space, fixed = create_params_from_overrides(self._parse_sweeper_params_config() + list(arguments))
        space = {**(self.search_space_distributions or {}), **space}
        for name in fixed:
            space.pop(name, None)
        directions = self._get_directions()
        with study_creation_lock(Path(str(self.sweep_dir))):
            study = optuna.create_study(
                study_name=self.study_name,
                storage=self.storage,
                sampler=self.sampler,
                directions=directions,
                load_if_exists=True,
            )
        book = TrialBook(study, Path(str(self.sweep_dir)), *self._claim_timings())
        log.info("Study %s in %s: %s", study.study_name, self.storage, book.summary(self.n_trials))
        try:
            with book.asking():
                book.retry_interrupted()
            while True:
                with book.asking():  # each trial's parameters drawn at once, by the sampler of its position
                    asked = [
                        (trial, *self._configure_trials([trial], space, fixed))
                        for trial in book.ask(self.n_jobs, self.n_trials, self._sampler_for)
                    ]
                if not asked:
                    break
                trials, overrides = [t for t, _ in asked], [o for _, o in asked]
                try:
                    returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
                except JobStopped as stopped:
                    book.interrupted(trials, stopped.line)
                    raise
                self.job_idx += len(returns)
                failures = [err for t, r in zip(trials, returns, strict=True) if (err := book.finish(t, r))]
                if failures and len(failures) / len(returns) > self.max_failure_rate:
                    log.error(
                        "Failed %s of %s trials (max_failure_rate=%s)",
                        len(failures),
                        len(returns),
                        self.max_failure_rate,
                    )
                    for ret in returns:
                        ret.return_value  # noqa: B018  re-raises the job's own error, with its traceback
            book.wait_for_held()
        finally:
            book.release()
            self._write_results(study)

    def _claim_timings(self) -> tuple[float, float]:
        claim = OmegaConf.select(self.config, "claim") or {}
        heartbeat = float(claim.get("heartbeat_s", HEARTBEAT_S))
        stale = float(claim.get("stale_after_s", STALE_AFTER_S))
        problem = timing_problem(heartbeat, stale)
        if problem is not None:
            raise SystemExit(f"compt: {problem}")
        return heartbeat, stale

    def _sampler_for(self, position: int) -> Any:
        """The sampler for the trial at ``position`` of the search: the configured one, seeded from its
        ``seed`` and the position (the configured sampler itself when it has no seed)."""
        node = OmegaConf.select(self.config, "hydra.sweeper.sampler")
        seed = node.get("seed") if node is not None else None
        if seed is None:
            return self.sampler
        derived = int(hashlib.sha256(f"{seed}:{position}".encode()).hexdigest()[:8], 16)
        return instantiate(node, seed=derived)

    def _write_results(self, study: optuna.Study) -> None:
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not complete:
            return
        results: dict[str, Any] = {"name": "optuna", "trials_complete": len(complete)}
        if len(self._get_directions()) < 2:
            best = study.best_trial
            results.update(best_params=best.params, best_value=best.value)
            log.info("Best parameters: %s; best value: %s", best.params, best.value)
        else:
            results["solutions"] = [{"params": t.params, "values": t.values} for t in study.best_trials]
        OmegaConf.save(OmegaConf.create(results), f"{self.sweep_dir}/optimization_results.yaml")


class TrialBook:
    """Who runs which trial of a study (claims in ``<sweep dir>/.compt-trials/``), and the rows that say so."""

    def __init__(
        self, study: optuna.Study, sweep_dir: Path, heartbeat_s: float, stale_after_s: float
    ) -> None:
        self.study = study
        self.folder = sweep_dir / TRIALS_DIR
        self.timings = (heartbeat_s, stale_after_s)
        self.claims: dict[int, JobClaim] = {}
        #: trials whose job folder another process holds: (trial, job folder, the job's config)
        self.held: list[tuple[Trial, Path, Any]] = []

    # ------------------------------------------------------------------ the study's rows
    def rows(self) -> list[FrozenTrial]:
        return self.study.get_trials(deepcopy=False)

    @staticmethod
    def is_interrupted(row: FrozenTrial) -> bool:
        return row.state == TrialState.FAIL and INTERRUPTED in row.user_attrs

    def position(self) -> int:
        """Trials the search has so far: every row but interrupted and waiting ones."""
        return sum(not self.is_interrupted(r) and r.state != TrialState.WAITING for r in self.rows())

    def summary(self, wanted: int) -> str:
        done = sum(r.state == TrialState.COMPLETE for r in self.rows())
        return f"{done} of {wanted} trials complete"

    # ------------------------------------------------------------------ asking
    @contextmanager
    def asking(self) -> Iterator[None]:
        """One process at a time asks for trials (and marks interrupted ones)."""
        lock = self._claim(ASK_LOCK)
        while not lock.acquire():
            time.sleep(POLL_S / 10)
        try:
            yield
        finally:
            lock.release()

    def _claim(self, name: str | int) -> JobClaim:
        return JobClaim(self.folder / str(name), *self.timings)

    def retry_interrupted(self) -> None:
        """Mark the ``RUNNING`` trials nobody runs any more (their claim is stale) as interrupted, and queue a
        re-run of every interrupted trial not re-run yet (the same parameters, so the same job folder)."""
        for row in self.rows():
            if row.state == TrialState.RUNNING:
                claim = self._claim(row.number)
                if claim.acquire():  # free or stale: its process is gone
                    self._fail(row.number, "its process stopped without reporting a result (killed?)")
                    claim.release()
        rows = self.rows()
        for index, row in enumerate(rows):
            if self.is_interrupted(row) and not any(
                _params(later) == row.params for later in rows[index + 1 :]
            ):
                log.info("[compt] trial %d was interrupted: running it again (%s)", row.number, row.params)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # enqueue_trial is "experimental" in optuna 2
                    self.study.enqueue_trial(dict(row.params))

    def ask(self, batch: int, wanted: int, sampler_for: Any) -> Iterator[Trial]:
        """Up to ``batch`` trials while the search has fewer than ``wanted``, each claimed by this process and
        sampled by ``sampler_for(position)`` (yielded one by one: the caller draws its parameters at once)."""
        for _ in range(batch):
            position = self.position()
            if position >= wanted:
                return
            self.study.sampler = sampler_for(position)
            trial = self.study.ask()
            claim = self._claim(trial.number)
            claim.acquire()
            self.claims[trial.number] = claim
            yield trial

    # ------------------------------------------------------------------ telling
    def finish(self, trial: Trial, ret: Any) -> Exception | None:
        """Tell a launched trial's result (its job's return value); the job's error when it failed."""
        try:
            value = ret.return_value
        except Exception as err:  # the job raised: a failed trial, as Optuna's own sweeper records it
            trial.set_user_attr("compt_error", str(err)[:500])
            self._tell(trial.number, state=TrialState.FAIL)
            log.warning("Failed trial %d: %s", trial.number, err)
            return err
        if value is None:
            folder = Path(ret.hydra_cfg.hydra.runtime.output_dir)
            if _foreign_claim(folder, self.timings):
                log.info(
                    "[compt] trial %d: %s is being trained by another process; its result is read once it is done",
                    trial.number,
                    folder,
                )
                self.held.append((trial, folder, ret.cfg))
                return None
            reason = "diverged" if RunDir(folder).is_diverged() else "no result (see its train.log)"
            trial.set_user_attr("compt_error", reason)
            self._tell(trial.number, state=TrialState.FAIL)
            return None
        self._tell(trial.number, values=_values(value))
        return None

    def wait_for_held(self) -> None:
        """Tell the trials whose job folder another process held, once that process is done with them."""
        from compt.jobs.search import objective

        for trial, folder, cfg in self.held:
            while _foreign_claim(folder, self.timings):
                time.sleep(POLL_S)
            value = objective(cfg, None, folder)
            if value is None:
                trial.set_user_attr("compt_error", "the process that held its job folder left no result")
                self._tell(trial.number, state=TrialState.FAIL)
            else:
                self._tell(trial.number, values=_values(value))
        self.held = []

    def interrupted(self, trials: Sequence[Trial], reason: str) -> None:
        """A stop signal ended the batch: mark its unfinished trials interrupted (the relaunch re-runs them)."""
        for trial in trials:
            if self.study._storage.get_trial(trial._trial_id).state == TrialState.RUNNING:
                self._fail(trial.number, reason)

    def _fail(self, number: int, reason: str) -> None:
        trial_id = self.study._storage.get_trial_id_from_study_id_trial_number(self.study._study_id, number)
        self.study._storage.set_trial_user_attr(trial_id, INTERRUPTED, reason[:1000])
        self._tell(number, state=TrialState.FAIL)

    def _tell(
        self, number: int, values: list[float] | None = None, state: TrialState = TrialState.COMPLETE
    ) -> None:
        self.study.tell(number, values=values, state=state)
        claim = self.claims.pop(number, None)
        if claim is not None:
            claim.release()
            with suppress(OSError):  # a finished trial needs no claim folder
                claim.path.parent.rmdir()

    def release(self) -> None:
        for claim in self.claims.values():
            claim.release()
        self.claims = {}


def _params(row: FrozenTrial) -> dict[str, Any]:
    """A row's parameters (a waiting row's are its queued ones)."""
    return row.params or dict(row.system_attrs.get("fixed_params", {}))


def _values(value: Any) -> list[float]:
    return [float(v) for v in value] if isinstance(value, list | tuple) else [float(value)]


def _foreign_claim(folder: Path, timings: tuple[float, float]) -> bool:
    """Whether another live process holds the claim on a job folder."""
    from compt.runs.claims import CLAIM_FILE, Holder, read_holder, stale_reason

    path = folder / CLAIM_FILE
    holder = read_holder(path)
    if holder is None:
        return False
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False
    return stale_reason(holder, age, Holder.this_process(), timings[1]) is None
