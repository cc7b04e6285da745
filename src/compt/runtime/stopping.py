"""Stopping a job cleanly: on a stop signal, and when another process took its claim over.

SLURM (a time limit, pre-emption, ``scancel``), Kubernetes and ``timeout`` send SIGTERM; ``#SBATCH
--signal=USR1@120`` sends SIGUSR1 ahead of a time limit; Ctrl-C sends SIGINT. :func:`compt.jobs.job.run_job`
handles all three for the whole job (:meth:`StopRequest.handling`):

- while a trainer runs (:meth:`StopRequest.deferred`), a first signal is only recorded: the run stops at the
  next step boundary, after writing ``last.ckpt`` there
  (:class:`compt.training.stop_boundary.StopAtStepBoundary`); a second signal stops it at once;
- before that (claiming and repairing the folder, loading the backbone and the data) there is nothing to save,
  and everything done there survives a kill: the job stops at once.

Either way the job ends with :class:`~compt.errors.RunInterrupted` (its message names the job and what was
saved; ``train.py`` prints it as one ``compt:`` line, adds how to resume, and exits with 128 + the signal's
number), after its claim is released. When the claim is found taken over (the ``on_lost`` of the job's claim,
:class:`compt.runs.claims.JobClaim`, which the job hands to :meth:`StopRequest.watch`), the run stops at the next
step boundary, or before its next write, without writing anything more (:class:`~compt.errors.ClaimLost`).

Plain Python (no Lightning), and no claim code: a claim is anything with ``held`` and ``verify()``
(:class:`Claim`). ``train.py`` imports it before the run driver.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from compt.errors import ClaimLost, RunInterrupted

log = logging.getLogger(__name__)

#: the signals that stop a job cleanly (and SIGUSR2 when a launcher handles it: submitit's time-limit signal)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)

#: what :meth:`StopRequest.code` says (the largest wins when DDP ranks agree on it)
NOTHING, SIGNALLED, CLAIM_LOST = 0, 1, 2


class Claim(Protocol):
    """The job's claim on its folder, as a stop request checks it (:class:`compt.runs.claims.JobClaim`)."""

    held: bool

    def verify(self) -> None:
        """Re-read the claim file; report a takeover through the claim's ``on_lost``."""


class Holder(Protocol):
    """Who holds a claim (:class:`compt.runs.claims.Holder`)."""

    def describe(self) -> str: ...


class JobStopped(SystemExit):
    """Raised by ``train.py`` after printing a stopped job's ``compt:`` line: it ends the process (and a
    ``-m`` sweep, whose later jobs do not start) with ``exit_code``; compt's Optuna sweeper catches it to
    mark the trial interrupted first."""

    def __init__(self, line: str, exit_code: int):
        super().__init__(exit_code)
        self.line = line
        self.exit_code = exit_code


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class StopRequest:
    """Whether this process was asked to stop (a signal) or lost its job's claim; one per process
    (:func:`stop_request`)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        #: the job's folder (named in messages) and its claim (checked before writes)
        self.job: Path | None = None
        self.claim: Claim | None = None
        self.lost_to: Holder | None = None
        self.lost = False
        #: what a signal outside a trainer interrupts, when not the start of the job (named in the message)
        self.outside: str | None = None
        self._defer = 0
        self._previous: dict[int, Any] = {}
        #: the handlers found at install time, handed the signal once the job stopped (:meth:`pass_on`)
        self._launcher_handlers: dict[int, Any] = {}

    # ------------------------------------------------------------------ the job
    def begin(self, job: str | Path) -> None:
        """A new job starts in this process (one after the other in a ``-m`` sweep)."""
        self.job, self.claim, self.lost, self.lost_to = Path(job), None, False, None
        self.outside = None

    @contextmanager
    def handling(self) -> Iterator[StopRequest]:
        """Handle the stop signals for the block (main thread only: elsewhere Python cannot), then put the
        previous handlers back (blocks may nest: the outermost one installs and restores)."""
        outermost = not self._previous
        if outermost:
            self.install()
        try:
            yield self
        finally:
            if outermost:
                self.restore()

    def signals(self) -> tuple[int, ...]:
        """The signals handled: :data:`STOP_SIGNALS`, plus SIGUSR2 when a launcher installed a handler for it
        (submitit requeues a job on it ahead of its time limit)."""
        handler = self._previous.get(signal.SIGUSR2, signal.getsignal(signal.SIGUSR2))
        return STOP_SIGNALS + ((signal.SIGUSR2,) if _launchers(handler) else ())

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in self.signals():
            previous = signal.signal(signum, self._handle)
            self._previous.setdefault(signum, previous)
        self._launcher_handlers = {s: h for s, h in self._previous.items() if _launchers(h)}

    def restore(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}

    def reclaim(self) -> None:
        """Take the stop signals back from Lightning, which installs its own SIGTERM handler when a trainer
        starts (it would stop mid-epoch without a checkpoint; its teardown puts this handler back)."""
        if not self._previous or threading.current_thread() is not threading.main_thread():
            return
        for signum in self._previous:
            if signal.getsignal(signum) != self._handle:
                signal.signal(signum, self._handle)

    def pass_on(self) -> None:
        """Once the stopped job said what it saved: hand its signal to the handler a launcher had installed
        for it (submitit's on its time-limit signal requeues the job, which resumes from ``last.ckpt``)."""
        handler = self._launcher_handlers.get(self.signum) if self.signum else None
        if handler is not None:
            handler(self.signum, None)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """While a trainer runs: a first signal is recorded and acted on at the next step boundary."""
        self._defer += 1
        try:
            yield
        finally:
            self._defer -= 1

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        again = self.signum is not None
        self.signum = self.signum or signum
        name = signal_name(signum)
        if again:
            raise self.interrupted(f"at once ({name} received twice); {self.kept_checkpoint()}")
        if not self._defer:
            raise self.interrupted(self.outside or f"before training started; {self.kept_checkpoint()}")
        log.warning(
            "[compt] %s received: saving %s at the next step boundary, then stopping (send it again to stop at once)",
            name,
            self.checkpoint_name(),
        )

    # ------------------------------------------------------------------ the claim
    def watch(self, claim: Claim) -> None:
        """Check ``claim`` before writes; its heartbeat reports a takeover here (``on_lost``)."""
        self.claim = claim

    def claim_lost(self, holder: Holder | None) -> None:
        """``on_lost`` of the job's claim (called from its heartbeat thread)."""
        self.lost, self.lost_to = True, holder

    def verify_claim(self) -> None:
        """Re-read the job's claim (a small file): :attr:`lost` is set when another process took it over."""
        if self.claim is not None and self.claim.held and not self.lost:
            self.claim.verify()

    def check_claim(self) -> None:
        """Before writing into the job's folder: raise :class:`ClaimLost` if another process took the claim
        over."""
        self.verify_claim()
        if self.lost:
            raise self.claim_lost_error()

    def claim_lost_error(self) -> ClaimLost:
        who = self.lost_to.describe() if self.lost_to else "it was removed"
        return ClaimLost(
            f"{self.job}: the claim on this job was taken over ({who}); another process trains it now, so "
            "this one stopped without writing anything more there. If no other process should train it, "
            "raise claim.stale_after_s (it must exceed the longest pause of this process's heartbeat)"
        )

    # ------------------------------------------------------------------ what the run checks
    @property
    def signalled(self) -> bool:
        return self.signum is not None

    def code(self) -> int:
        """:data:`CLAIM_LOST`, :data:`SIGNALLED` or :data:`NOTHING`."""
        return CLAIM_LOST if self.lost else SIGNALLED if self.signalled else NOTHING

    def checkpoint_name(self) -> str:
        return str(self.job / "checkpoints" / "last.ckpt") if self.job else "last.ckpt"

    def kept_checkpoint(self, last: Path | None = None) -> str:
        """What a stop that saves nothing new leaves behind: ``last`` (default: the job's ``last.ckpt``; a
        sub-run's, e.g. SPoT's stage 1, is its own)."""
        last = last or (self.job / "checkpoints" / "last.ckpt" if self.job else None)
        if last is not None and last.is_file():
            step = checkpoint_step(last)
            at = f" (step {step})" if step is not None else ""
            return f"nothing new saved; {last}{at} is kept"
        return "nothing saved (no checkpoint yet)"

    def interrupted(self, what: str, signum: int | None = None) -> RunInterrupted:
        """The error that ends a stopped job: ``<SIGNAL>: stopped <job> <what>``."""
        signum = signum or self.signum or signal.SIGTERM
        return RunInterrupted(f"{signal_name(signum)}: stopped {self.job} {what}", int(signum))


def _launchers(handler: Any) -> bool:
    """Whether ``handler`` is a Python handler some launcher installed (not Python's own SIGINT handler)."""
    return callable(handler) and handler is not signal.default_int_handler


def checkpoint_step(path: Path) -> int | None:
    """The global step a ``last.ckpt`` was written at (None when it cannot be read)."""
    with suppress(Exception):
        import torch

        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"])
    return None


_REQUEST = StopRequest()


def stop_request() -> StopRequest:
    """This process's :class:`StopRequest`."""
    return _REQUEST
