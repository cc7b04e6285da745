"""The claim on a job folder (:mod:`compt.runs.claims`): one holder at a time, stale claims taken over, and a holder
whose claim was taken over anyway stops before writing anything more."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, replace
from types import SimpleNamespace

import pytest

from compt.errors import ClaimLost
from compt.runs.claims import CLAIM_FILE, Holder, JobClaim, claim_job, read_holder, stale_reason
from compt.runtime.stopping import StopRequest
from compt.training.callbacks import LastCheckpoint
from compt.training.loggers import ResumableCSVLogger
from compt.training.stop_boundary import StopAtStepBoundary


def _write_claim(folder, holder: Holder, age_s: float = 0.0) -> None:
    path = folder / CLAIM_FILE
    path.write_text(json.dumps(asdict(holder)))
    if age_s:
        then = time.time() - age_s
        os.utime(path, (then, then))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _other(**changes) -> Holder:
    """A holder in another live process on this host (the test runner's parent: pytest's shell)."""
    return replace(Holder.this_process(), **{"pid": os.getppid(), "token": "other", **changes})


def test_a_second_claim_on_a_held_folder_fails_and_names_the_holder(tmp_path):
    first = JobClaim(tmp_path, heartbeat_s=60)
    assert first.acquire() and first.held
    record = read_holder(tmp_path / CLAIM_FILE)
    assert record is not None and record.pid == os.getpid() and record.token == first.me.token

    _write_claim(tmp_path, _other())  # as if another live process had claimed it
    second = JobClaim(tmp_path)
    assert not second.acquire() and not second.held
    assert second.holder is not None and second.holder.pid == os.getppid()
    assert f"pid {os.getppid()}" in second.holder.describe()
    first.release()  # not its claim any more: left alone
    assert (tmp_path / CLAIM_FILE).exists()


def test_release_removes_the_claim_and_another_process_can_take_it(tmp_path):
    with claim_job(tmp_path) as claim:
        assert claim.held and (tmp_path / CLAIM_FILE).exists()
    assert not (tmp_path / CLAIM_FILE).exists()
    with claim_job(tmp_path) as again:
        assert again.held


@pytest.mark.parametrize(
    ("holder", "age_s", "expected"),
    [
        (lambda: _other(pid=_dead_pid()), 0, "is gone"),  # same host, process gone
        (lambda: _other(host="another-node"), 3600, "no heartbeat"),  # its node died
        (lambda: _other(host="n1", slurm_job="77", slurm_restart=0), 0, "requeued"),  # requeue of this job
        (lambda: _other(), 0, None),  # a live process on this host
        (lambda: _other(host="another-node"), 5, None),  # fresh heartbeat elsewhere
        (lambda: _other(host="n1", slurm_job="77", slurm_restart=1), 0, None),  # the same run of the job
        (lambda: _other(host="n1", slurm_job="78", slurm_restart=0), 0, None),  # another SLURM job
    ],
)
def test_stale_claims_are_those_whose_holder_is_gone(holder, age_s, expected):
    me = replace(Holder.this_process(), slurm_job="77", slurm_restart=1)
    reason = stale_reason(holder(), age_s, me, stale_after_s=600)
    assert (reason is None) if expected is None else (expected in reason)


def test_a_stale_claim_is_taken_over_and_a_live_one_is_not(tmp_path, caplog):
    _write_claim(tmp_path, _other(pid=_dead_pid()))
    claim = JobClaim(tmp_path)
    assert claim.acquire()
    assert read_holder(tmp_path / CLAIM_FILE).token == claim.me.token
    assert "taking over the stale claim" in caplog.text
    claim.release()

    _write_claim(tmp_path, _other(host="another-node"), age_s=30)
    assert not JobClaim(tmp_path, stale_after_s=600).acquire()
    assert JobClaim(tmp_path, heartbeat_s=1, stale_after_s=10).acquire()  # judged by a shorter timeout


def test_a_requeued_slurm_job_takes_its_own_folder_back(tmp_path, monkeypatch):
    _write_claim(tmp_path, _other(host="node-a", slurm_job="4242", slurm_restart=0))
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    claim = JobClaim(tmp_path)
    assert claim.acquire()
    claim.release()


def test_the_heartbeat_refreshes_a_held_claim(tmp_path):
    with claim_job(tmp_path, heartbeat_s=0.05) as claim:
        path = tmp_path / CLAIM_FILE
        old = time.time() - 1000
        os.utime(path, (old, old))
        deadline = time.monotonic() + 5
        while path.stat().st_mtime < time.time() - 100 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert path.stat().st_mtime > time.time() - 100
        assert claim.held


def test_an_unreadable_claim_left_long_ago_is_replaced(tmp_path):
    path = tmp_path / CLAIM_FILE
    path.write_text("{not json")
    old = time.time() - 1000
    os.utime(path, (old, old))
    with claim_job(tmp_path, heartbeat_s=60) as claim:
        assert claim.held and read_holder(path).token == claim.me.token


def test_timings_that_would_let_two_processes_train_a_job_are_refused(tmp_path):
    with pytest.raises(ValueError, match="claim.heartbeat_s=0"):
        JobClaim(tmp_path, heartbeat_s=0)  # the heartbeat thread would spin
    with pytest.raises(ValueError, match="claim.stale_after_s=100 must be at least 3 heartbeats"):
        JobClaim(tmp_path, heartbeat_s=60, stale_after_s=100)


def test_the_heartbeat_tells_a_holder_its_claim_was_taken_over(tmp_path):
    lost: list = []
    claim = JobClaim(tmp_path, heartbeat_s=0.05, stale_after_s=1, on_lost=lost.append)
    assert claim.acquire()
    _write_claim(tmp_path, _other())  # a second launch judged it stale and took the job
    deadline = time.monotonic() + 5
    while not lost and time.monotonic() < deadline:
        time.sleep(0.02)
    assert claim.lost and [h.token for h in lost] == ["other"]
    claim.release()
    assert read_holder(tmp_path / CLAIM_FILE).token == "other"  # the new holder's claim is left alone


def _step_end(global_step: int = 7) -> SimpleNamespace:
    """A trainer at the end of a training step, as the callbacks see it (one device)."""

    def no_write(*args, **kwargs):
        raise AssertionError("a checkpoint was written after the claim was lost")

    return SimpleNamespace(
        global_step=global_step, sanity_checking=False, world_size=1, save_checkpoint=no_write
    )


def test_a_run_whose_claim_was_taken_over_stops_before_writing_anything_more(tmp_path):
    stop = StopRequest()
    stop.begin(tmp_path)
    claim = JobClaim(tmp_path, heartbeat_s=60, on_lost=stop.claim_lost)  # no heartbeat before the write
    assert claim.acquire()
    stop.watch(claim)
    checkpoint = LastCheckpoint(tmp_path / "checkpoints" / "last.ckpt", 1, stop)
    boundary = StopAtStepBoundary(stop, checkpoint)
    boundary.on_train_batch_end(_step_end(), None, None, None, 0)  # still its claim: trains on

    _write_claim(tmp_path, _other())
    with pytest.raises(ClaimLost, match=f"{tmp_path}: the claim on this job was taken over \\(pid"):
        checkpoint.save(_step_end())  # the claim is read before every write
    assert stop.lost and not checkpoint.path.exists()
    with pytest.raises(ClaimLost):
        boundary.on_train_batch_end(_step_end(8), None, None, None, 0)  # and at the next step boundary

    csv = ResumableCSVLogger(tmp_path, name="csv", version="")
    csv.log_metrics({"train/loss": 1.0}, step=7)  # buffered before the loss was found
    trainer = SimpleNamespace(loggers=[csv])
    boundary.on_exception(trainer, None, ClaimLost("taken over"))  # Lightning saves the loggers next
    csv.finalize("failed")
    assert not (tmp_path / "csv" / "metrics.csv").exists()
    claim.release()
    assert read_holder(tmp_path / CLAIM_FILE).token == "other"
