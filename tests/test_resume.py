"""Nothing lost, nothing repeated: a job killed with SIGKILL and relaunched ends exactly like an uninterrupted one."""

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

from compt.training.callbacks import ResumeState
from compt.training.launch import RUN_DIR_ENV, gpu_lease, shared_output_dir
from tests.helpers import REPO_ROOT, read_results, run_script

#: 5 epochs of 20 steps, a checkpoint at every epoch end, bit-reproducible on CPU
RESUMABLE = [
    "experiment=demo",
    "optim.epochs=5",
    "data.epoch_size=320",
    "eval.max_samples=8",
    "callbacks.checkpoint_every_n_epochs=1",
    "trainer.check_val_every_n_epoch=5",
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


@pytest.mark.slow
def test_a_job_killed_mid_training_and_relaunched_ends_like_an_uninterrupted_one(tmp_path):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
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
    assert step_at_kill < 100 and not (killed / "results.json").exists(), (
        "the job was not killed mid-training"
    )

    resumed = run_script("train.py", *RESUMABLE, f"hydra.run.dir={killed}")
    assert "resuming from" in resumed.stdout
    run_script("train.py", *RESUMABLE, f"hydra.run.dir={clean}")

    a, b = read_results(clean), read_results(killed)
    assert a["global_step"] == b["global_step"] == 100
    assert b["curves"]["train_loss"] == a["curves"]["train_loss"]  # every epoch once, same losses
    assert b["metrics"] == a["metrics"] and b["avg"] == a["avg"]
    assert b["router_weights"] == a["router_weights"]
    bank_a = load_file(Path(clean) / "bank" / "prompt_bank.safetensors")
    bank_b = load_file(Path(killed) / "bank" / "prompt_bank.safetensors")
    assert bank_a.keys() == bank_b.keys()
    assert all(torch.equal(bank_a[k], bank_b[k]) for k in bank_a)
    # the CSV log continued across the kill: every logged step once, as in the uninterrupted run
    log_a = (clean / "csv" / "metrics.csv").read_text().splitlines()
    log_b = (killed / "csv" / "metrics.csv").read_text().splitlines()
    assert len(log_a) > 20 and log_b == log_a
