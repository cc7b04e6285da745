"""Nothing lost, nothing repeated: a job killed with SIGKILL, or stopped by SIGTERM (SIGUSR1, SIGINT) at a step
boundary, and relaunched ends exactly like an uninterrupted one."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from compt.data.sampling import MixedTaskSampler, ShardedBatchSampler
from compt.errors import RunInterrupted
from compt.jobs.launch import RUN_DIR_ENV, gpu_lease, shared_output_dir
from compt.runtime.stopping import StopRequest
from compt.training.callbacks import ResumeState
from tests.helpers import REPO_ROOT, read_results, run_script

#: 3 epochs of 10 steps, a checkpoint at every epoch end, bit-reproducible on CPU
RESUMABLE = [
    "experiment=demo",
    "optim.epochs=3",
    "data.epoch_size=160",
    "eval.max_samples=8",
    "callbacks.checkpoint_every_n_epochs=1",
    "trainer.check_val_every_n_epoch=3",
    "trainer.enable_progress_bar=false",
    "deterministic=true",
]


def _draws() -> tuple:
    return (torch.rand(4).tolist(), float(np.random.rand()), random.random())


def test_rng_state_survives_a_weights_only_checkpoint_and_is_restored_at_train_start(tmp_path):
    callback = ResumeState()
    torch.save({"state": callback.state_dict()}, tmp_path / "rng.ckpt")
    expected = _draws()
    restored = ResumeState()
    restored.load_state_dict(torch.load(tmp_path / "rng.ckpt", weights_only=True)["state"])
    _draws()  # anything drawn between loading the checkpoint and the start of training is undone
    loader = SimpleNamespace(batch_sampler=None, sampler=None)
    fit_loop = SimpleNamespace(_combined_loader=SimpleNamespace(flattened=[loader]), _data_fetcher=[])
    restored.on_train_start(SimpleNamespace(fit_loop=fit_loop, current_epoch=3), None)
    assert _draws() == expected


def test_ranks_above_zero_use_the_folder_rank_zero_exported(monkeypatch, tmp_path):
    for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID", RUN_DIR_ENV):
        monkeypatch.delenv(name, raising=False)
    assert shared_output_dir(str(tmp_path / "rank0")) == str(tmp_path / "rank0")
    assert os.environ[RUN_DIR_ENV] == str(tmp_path / "rank0")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert shared_output_dir(str(tmp_path / "another-timestamp")) == str(tmp_path / "rank0")


def test_gpu_leases_are_exclusive_and_wait_for_a_free_gpu(tmp_path):
    with gpu_lease(tmp_path, 2, preferred=1) as first, gpu_lease(tmp_path, 2, preferred=1) as second:
        assert (first, second) == (1, 0)
        got: list[int] = []

        def third() -> None:
            with gpu_lease(tmp_path, 2, preferred=0, poll_s=0.05) as index:
                got.append(index)

        waiting = threading.Thread(target=third)
        waiting.start()
        time.sleep(0.3)
        assert got == []  # both GPUs held: the third job waits
    waiting.join(timeout=5)
    assert got == [0]


def test_a_batch_sampler_resumed_mid_epoch_yields_the_rest_of_that_epoch_once():
    stream = MixedTaskSampler(["a", "b"], [10, 6], temperature=1.0, seed=3, length=16)
    batches = ShardedBatchSampler(stream, 4)
    epoch = list(batches)
    batches.resume_at(3)
    assert list(batches) == epoch[3:] and len(batches) == len(epoch) == 4
    assert list(batches) == epoch  # only the next iteration is shortened


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="signal handlers need the main thread"
)
def test_stop_signals_wait_for_a_step_boundary_while_training_and_stop_at_once_otherwise(tmp_path):
    def deliver(signum: int) -> None:
        os.kill(os.getpid(), signum)
        time.sleep(0.05)  # Python runs the handler between two instructions

    before = signal.getsignal(signal.SIGTERM)
    stop = StopRequest()
    stop.begin(tmp_path / "job")
    with stop.handling():
        with pytest.raises(
            RunInterrupted,
            match=f"SIGUSR1: stopped {tmp_path / 'job'} before training started; nothing saved",
        ) as raised:
            deliver(signal.SIGUSR1)  # loading: nothing to save, stop now
        assert raised.value.exit_code == 128 + signal.SIGUSR1
    assert signal.getsignal(signal.SIGTERM) == before  # the handlers are the job's only

    stop = StopRequest()
    with stop.handling(), stop.deferred():  # a trainer runs
        deliver(signal.SIGTERM)
        assert stop.signalled and stop.signum == signal.SIGTERM  # acted on at the next step boundary
        with pytest.raises(
            RunInterrupted, match=r"SIGTERM: stopped .* at once \(SIGINT received twice\)"
        ) as raised:
            deliver(signal.SIGINT)  # Ctrl-C again: at once
    assert raised.value.exit_code == 143

    requeued: list[int] = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: requeued.append(signum))  # submitit's
    try:
        stop = StopRequest()
        with stop.handling(), stop.deferred():
            deliver(signal.SIGUSR2)  # submitit's time-limit signal: saved at the step boundary first
            assert stop.signum == signal.SIGUSR2 and requeued == []
        stop.pass_on()  # then submitit requeues the job
        assert requeued == [signal.SIGUSR2]
    finally:
        signal.signal(signal.SIGUSR2, previous)


def _run(folder: Path, *extra: str):
    return run_script("train.py", *RESUMABLE, *extra, f"hydra.run.dir={folder}", check=False, fresh=True)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """The run the interrupted ones must end like."""
    folder = tmp_path_factory.mktemp("clean") / "run"
    assert _run(folder).returncode == 0
    return folder


def assert_same_run(a: Path, b: Path) -> None:
    """Same steps, losses, metrics, router weights, bank and CSV log (every logged step once)."""
    ra, rb = read_results(a), read_results(b)
    assert ra["global_step"] == rb["global_step"] == 30
    assert rb["curves"]["train_loss"] == ra["curves"]["train_loss"]  # every epoch once, same losses
    assert rb["metrics"] == ra["metrics"] and rb["avg"] == ra["avg"]
    assert rb["router_weights"] == ra["router_weights"]
    bank_a = load_file(a / "bank" / "prompt_bank.safetensors")
    bank_b = load_file(b / "bank" / "prompt_bank.safetensors")
    assert bank_a.keys() == bank_b.keys()
    assert all(torch.equal(bank_a[k], bank_b[k]) for k in bank_a)
    log_a = (a / "csv" / "metrics.csv").read_text().splitlines()
    log_b = (b / "csv" / "metrics.csv").read_text().splitlines()
    assert len(log_a) >= 10 and log_b == log_a  # header, training every 4 steps (7 rows), validation, test


@pytest.mark.slow
def test_a_job_killed_mid_training_and_relaunched_ends_like_an_uninterrupted_one(tmp_path, uninterrupted):
    killed = tmp_path / "killed"
    command = [sys.executable, "train.py", *RESUMABLE, f"hydra.run.dir={killed}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    checkpoint = killed / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 600
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step_at_kill = torch.load(checkpoint, weights_only=True)["global_step"]
    assert step_at_kill < 30 and not (killed / "results.json").exists(), "the job was not killed mid-training"

    resumed = _run(killed)
    assert "resuming from" in resumed.stdout
    assert_same_run(uninterrupted, killed)


@pytest.mark.slow
def test_sigterm_mid_epoch_saves_at_the_step_boundary_says_so_and_the_relaunch_ends_like_an_uninterrupted_run(
    tmp_path, uninterrupted
):
    stopped = tmp_path / "stopped"
    signal_at = ["+callbacks.signal._target_=tests.interrupt.SignalFreshRun", "+callbacks.signal.step=17"]
    proc = _run(stopped, *signal_at)  # the signal arrives during step 18 (epoch 2, batch 8 of 10)
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr[-3000:]  # non-zero: SLURM requeues, if asked
    line = proc.stderr.strip().splitlines()[-1]
    assert line == (
        f"compt: SIGTERM: stopped {stopped} after step 18 (epoch 2, batch 8 of 10); saved "
        f"{stopped}/checkpoints/last.ckpt; resume it with: python train.py resume={stopped}"
    ), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert torch.load(stopped / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 18
    assert not (stopped / "results.json").exists() and not (stopped / ".compt-claim").exists()

    resumed = run_script("train.py", f"resume={stopped}", fresh=True)
    assert "resuming from" in resumed.stdout and "not resumable" not in resumed.stderr
    assert_same_run(uninterrupted, stopped)
