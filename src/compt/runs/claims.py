"""A claim on a job folder: at most one process trains a job, even when a sweep is submitted twice or a
requeued job starts while the old one still runs.

The claim is a small JSON file, ``RUN_DIR/.compt-claim``, holding who trains the job (host, pid, start time,
SLURM job id and restart count, a random token). It is created atomically with ``os.link`` of a fully written
file (atomic on local disks and on NFS, Lustre and GPFS, unlike ``flock``, which some of them do not honour
across nodes), refreshed by a heartbeat thread (its modification time) and removed when the job ends.

A process that finds a claim leaves the job alone unless the claim is stale:

- its process is gone (same host, the pid no longer exists);
- it is an earlier run of this very SLURM job (same ``SLURM_JOB_ID``, lower ``SLURM_RESTART_COUNT``): a requeued
  job takes its own folder back at once;
- its heartbeat stopped (not refreshed for ``stale_after_s``, e.g. its node died).

A stale claim is moved away (verifying it is still the one judged stale) and the folder claimed anew. So that a
live holder is never judged stale, ``stale_after_s`` must be at least :data:`MIN_STALE_HEARTBEATS` heartbeats
(:func:`timing_problem`). A holder whose claim was taken over anyway (its heartbeat thread stalled, a clock
jumped) learns it at its next heartbeat or :meth:`JobClaim.verify` and is told through ``on_lost``, so that it
stops before writing anything more into the folder.
Plain Python (no torch, nothing else of compt): the run folder (:mod:`compt.runs`) names its file from here.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from compt.atomic import output_error, write_problem
from compt.runs.folder import CLAIM_FILE

log = logging.getLogger(__name__)

#: how often the holder refreshes its claim, and after how long without a refresh a claim is stale
HEARTBEAT_S = 60.0
STALE_AFTER_S = 600.0
#: a claim is stale only after this many missed heartbeats at least (``stale_after_s`` / ``heartbeat_s``)
MIN_STALE_HEARTBEATS = 3


def timing_problem(heartbeat_s: float, stale_after_s: float) -> str | None:
    """Why these claim timings would let two processes train one job (None: they are sound): a heartbeat
    that is not a positive interval, or a stale time under :data:`MIN_STALE_HEARTBEATS` heartbeats (a live
    claim would be taken over between two of its refreshes)."""
    if not heartbeat_s > 0:  # also NaN
        return f"claim.heartbeat_s={heartbeat_s:g}: the claim's refresh interval must be a positive number of seconds"
    if not stale_after_s >= MIN_STALE_HEARTBEATS * heartbeat_s:
        return (
            f"claim.stale_after_s={stale_after_s:g} must be at least {MIN_STALE_HEARTBEATS} heartbeats "
            f"(claim.heartbeat_s={heartbeat_s:g}, so >= {MIN_STALE_HEARTBEATS * heartbeat_s:g} s): a live claim would "
            "be taken over and two processes would train the job; raise claim.stale_after_s or lower "
            "claim.heartbeat_s"
        )
    return None


@dataclass(frozen=True)
class Holder:
    """Who holds (or asks for) a claim."""

    host: str
    pid: int
    started: float
    slurm_job: str | None
    slurm_restart: int
    token: str

    @classmethod
    def this_process(cls) -> Holder:
        restart = os.environ.get("SLURM_RESTART_COUNT", "0")
        return cls(
            host=socket.gethostname(),
            pid=os.getpid(),
            started=time.time(),
            slurm_job=os.environ.get("SLURM_JOB_ID") or None,
            slurm_restart=int(restart) if restart.isdigit() else 0,
            token=secrets.token_hex(8),
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Holder:
        return cls(
            host=str(data["host"]),
            pid=int(data["pid"]),
            started=float(data["started"]),
            slurm_job=data.get("slurm_job"),
            slurm_restart=int(data.get("slurm_restart", 0)),
            token=str(data["token"]),
        )

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        slurm = f", SLURM job {self.slurm_job}" if self.slurm_job else ""
        return f"pid {self.pid} on {self.host}{slurm}, since {when}"


def read_holder(path: Path) -> Holder | None:
    """The holder recorded in a claim file (None when it is gone or unreadable)."""
    try:
        return Holder.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def stale_reason(holder: Holder, age_s: float, me: Holder, stale_after_s: float) -> str | None:
    """Why ``holder``'s claim (last refreshed ``age_s`` ago) may be taken over by ``me``; None: it is live."""
    same_host = holder.host == me.host
    if same_host and holder.pid == me.pid:
        return "left by this process"
    if holder.slurm_job and holder.slurm_job == me.slurm_job and holder.slurm_restart < me.slurm_restart:
        return f"an earlier run of this SLURM job {me.slurm_job} (requeued)"
    if same_host and not pid_alive(holder.pid):
        return f"its process {holder.pid} on {holder.host} is gone"
    if age_s > stale_after_s:
        return f"no heartbeat for {age_s:.0f} s (> {stale_after_s:.0f} s)"
    return None


class JobClaim:
    """The claim on one job folder. ``acquire()`` then ``release()``, or ``with claim_job(...)``.

    Args:
        folder: the job's run folder (created if needed).
        heartbeat_s: refresh interval of a held claim (> 0).
        stale_after_s: a claim not refreshed for this long is taken over: at least
            :data:`MIN_STALE_HEARTBEATS` heartbeats, and longer than the clock skew between the nodes sharing
            the file system.
        on_lost: called (from the heartbeat thread, or from :meth:`verify`) with the new holder (None: the
            claim was removed) once this process finds its claim taken over.

    Raises:
        ValueError: timings that would let two processes train the job (:func:`timing_problem`).
    """

    def __init__(
        self,
        folder: str | Path,
        heartbeat_s: float = HEARTBEAT_S,
        stale_after_s: float = STALE_AFTER_S,
        on_lost: Callable[[Holder | None], None] | None = None,
    ) -> None:
        problem = timing_problem(float(heartbeat_s), float(stale_after_s))
        if problem is not None:
            raise ValueError(problem)
        self.path = Path(folder) / CLAIM_FILE
        self.heartbeat_s = float(heartbeat_s)
        self.stale_after_s = float(stale_after_s)
        self.on_lost = on_lost
        self.me = Holder.this_process()
        #: the live holder found by a failed ``acquire()``
        self.holder: Holder | None = None
        #: set once this process found its claim taken over
        self.lost = False
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    @property
    def held(self) -> bool:
        return self._beat is not None

    # ------------------------------------------------------------------ acquire / release
    def acquire(self) -> bool:
        """Claim the folder: True when this process now holds it; False when a live process does (then
        :attr:`holder` says who). Stale claims are taken over (one warning line)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            if self._create():
                self._start_heartbeat()
                return True
            holder = read_holder(self.path)
            if holder is None:
                if self._unreadable_claim_is_old():
                    self._remove_if(None)
                continue  # gone meanwhile, or being replaced: try again
            reason = stale_reason(holder, self._age(), self.me, self.stale_after_s)
            if reason is None:
                self.holder = holder
                return False
            log.warning(
                "[compt] taking over the stale claim on %s (%s): %s",
                self.path.parent,
                reason,
                holder.describe(),
            )
            self._remove_if(holder.token)
        return False

    def release(self) -> None:
        """Stop the heartbeat and remove the claim if it is still this process's."""
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
            self._beat = None
        holder = read_holder(self.path)
        if holder is not None and holder.token == self.me.token:
            self.path.unlink(missing_ok=True)

    def verify(self) -> bool:
        """Whether this process still holds the claim; when it does not, :attr:`lost` is set and ``on_lost``
        is called (once). Cheap (reads a small file): call it before writing into the folder."""
        holder = read_holder(self.path)
        if holder is not None and holder.token == self.me.token:
            return True
        self._lose(holder)
        return False

    def _lose(self, holder: Holder | None) -> None:
        if self.lost:
            return
        self.lost = True
        log.warning(
            "[compt] the claim on %s was taken over (%s); this process stops training the job",
            self.path.parent,
            holder.describe() if holder else "removed",
        )
        if self.on_lost is not None:
            self.on_lost(holder)

    def _create(self) -> bool:
        """Write the record to a private file, then hard-link it as the claim: fails if a claim exists."""
        draft = self.path.with_name(f"{self.path.name}.{self.me.token}.new")
        try:
            draft.write_text(json.dumps(asdict(self.me)) + "\n")
            os.link(draft, self.path)
            return True
        except FileExistsError:
            return False
        except OSError as err:
            if write_problem(err) is not None:  # a full disk, a read-only folder: one line, no draft left
                raise output_error(self.path, err) from err
            # NFS: the link may have been made although the reply was lost; the link count tells
            return draft.stat().st_nlink == 2
        finally:
            draft.unlink(missing_ok=True)

    def _age(self) -> float:
        try:
            return time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return 0.0

    def _unreadable_claim_is_old(self) -> bool:
        return self.path.exists() and self._age() > self.heartbeat_s

    def _remove_if(self, token: str | None) -> None:
        """Remove the claim if it is still the one judged stale (``token``; None: an unreadable one)."""
        grave = self.path.with_name(f"{self.path.name}.{self.me.token}.stale")
        try:
            os.rename(self.path, grave)
        except FileNotFoundError:
            return
        taken = read_holder(grave)
        if (taken.token if taken else None) != token:  # a fresh claim was made meanwhile: put it back
            with suppress(FileExistsError):
                os.link(grave, self.path)
        grave.unlink(missing_ok=True)

    # ------------------------------------------------------------------ heartbeat
    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, name="compt-claim-heartbeat", daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            if not self.verify():
                return
            with suppress(OSError):
                os.utime(self.path)


@contextmanager
def claim_job(
    folder: str | Path,
    heartbeat_s: float = HEARTBEAT_S,
    stale_after_s: float = STALE_AFTER_S,
    on_lost: Callable[[Holder | None], None] | None = None,
) -> Iterator[JobClaim]:
    """Hold the claim on ``folder`` for the block; ``claim.held`` is False when another live process holds
    it (``claim.holder``), and the block should leave the job alone. ``on_lost``: see :class:`JobClaim`."""
    claim = JobClaim(folder, heartbeat_s, stale_after_s, on_lost)
    claim.acquire()
    try:
        yield claim
    finally:
        if claim.held:
            claim.release()
