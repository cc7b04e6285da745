"""A sweep on a cluster, broken as a cluster breaks it: submitted twice at once, runs that diverge, damaged
files, a forced re-run that is requeued, folders and data that cannot work. End to end, through train.py."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from compt.report import build_report
from compt.runs import RunDir
from compt.sweeps.jobs import list_jobs
from tests.helpers import FAST, REPO_ROOT, read_results, run_script
from tests.test_recovery import finished_run
from tests.test_resume import RESUMABLE

pytestmark = pytest.mark.slow

#: six short jobs, three of which diverge (a private-prompt learning rate of 1e30); bit-reproducible on CPU
SWEEP = [
    *FAST,
    "trainer.max_steps=4",
    "eval.max_samples=2",
    "deterministic=true",
    "method=pt,ssum,msum",
    "optim.lr.private=0.02,1e30",
]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled"}


def _job(folder: Path, method: str, lr: str) -> Path:
    [job] = [
        p for p in folder.iterdir() if f"method={method}," in p.name and f"optim.lr.private={lr}" in p.name
    ]
    return job


@pytest.fixture(scope="module")
def double_sweep(tmp_path_factory) -> tuple[Path, list[subprocess.CompletedProcess]]:
    """The same sweep launched twice at once on one folder (a double submission)."""
    folder = tmp_path_factory.mktemp("double") / "sweep"
    command = [sys.executable, "train.py", "-m", *SWEEP, f"hydra.sweep.dir={folder}"]
    procs = [
        subprocess.Popen(
            command, cwd=REPO_ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    finished = []
    for proc in procs:
        out, err = proc.communicate(timeout=900)
        finished.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return folder, finished


def test_two_sweep_processes_on_one_folder_train_each_job_once(double_sweep):
    folder, procs = double_sweep
    assert [p.returncode for p in procs] == [0, 0], procs[0].stderr[-3000:] + procs[1].stderr[-3000:]
    jobs = sorted(p for p in folder.iterdir() if (p / ".hydra").is_dir())
    assert len(jobs) == 6 and all((job / "results.json").is_file() for job in jobs)
    trained = [
        {Path(line.split()[1]).parent for line in p.stdout.splitlines() if line.startswith("wrote ")}
        | {Path(line.split(": ")[1]) for line in p.stderr.splitlines() if "training diverged" in line}
        for p in procs
    ]
    assert not trained[0] & trained[1]  # no job trained by both
    assert sorted(trained[0] | trained[1]) == jobs  # every job trained
    assert sum(p.stdout.count("is being trained by another process") for p in procs) >= 1
    assert not any(list(job.glob(".compt-claim*")) for job in jobs)  # every claim released
    for (
        job
    ) in jobs:  # each complete job's log: its own rows, once (never two writers); train.log holds the run's
        if read_results(job)["status"] == "complete":
            rows = (job / "csv" / "metrics.csv").read_text().splitlines()[1:]
            assert rows and len(rows) == len(set(rows))
            log = (job / "train.log").read_text()
            assert "`Trainer.fit` stopped" in log and "| **avg** |" in log


def test_a_diverged_job_is_recorded_skipped_and_never_averaged(double_sweep, tmp_path):
    folder, procs = double_sweep
    stderr = procs[0].stderr + procs[1].stderr
    lines = [line for line in stderr.splitlines() if line.startswith("compt: ")]
    assert len(lines) == 3 and all("training diverged at step" in line for line in lines), lines
    assert all("optim.lr.private=1e+30" in line and "force=true" in line for line in lines)
    for method in ("pt", "ssum", "msum"):  # ssum/msum: NaN router logits reach the guard, not a ValueError
        diverged = read_results(_job(folder, method, "1e+30"))
        assert diverged["status"] == "diverged" and diverged["diverged"]["step"] <= 4
        assert diverged["method"] == method and "metrics" not in diverged
        assert read_results(_job(folder, method, "0.02"))["status"] == "complete"
    assert "Expected parameter logits" not in stderr

    statuses = [
        job.status for job in list_jobs(None, [*SWEEP, f"hydra.sweep.dir={folder}"], REPO_ROOT / "conf")
    ]
    assert sorted(statuses) == ["diverged"] * 3 + ["done"] * 3  # what compt sweep list shows

    report = build_report([folder], tmp_path / "report", plots=False, progress=False)
    assert len(report.scan.runs) == 3 and len(report.scan.diverged) == 3
    assert all(group.stat("Avg.").n == 1 for group in report.groups)
    assert "## Diverged runs (3, not averaged)" in report.markdown


def test_damaged_jobs_are_finished_on_relaunch(double_sweep, tmp_path):
    original, _ = double_sweep
    folder = tmp_path / "sweep"
    shutil.copytree(original, folder)
    partial, no_bank, broken = (_job(folder, m, "0.02") for m in ("pt", "ssum", "msum"))
    expected = {job: read_results(job) for job in (partial, no_bank, broken)}
    banks = {job: load_file(job / "bank" / "prompt_bank.safetensors") for job in (partial, no_bank, broken)}
    results = read_results(partial)
    del results["primary"]  # parseable, marked complete, missing a field
    (partial / "results.json").write_text(json.dumps(results))
    shutil.rmtree(no_bank / "bank")
    (broken / "results.json").unlink()  # interrupted, with a truncated checkpoint and a stale temp file
    checkpoint = broken / "checkpoints" / "last.ckpt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    (broken / ".results.json.x1y2z3").write_text("{")
    diverged = {
        job: (job / "results.json").stat().st_mtime_ns for job in folder.iterdir() if "=1e+30" in job.name
    }

    proc = run_script("train.py", "-m", *SWEEP, f"hydra.sweep.dir={folder}")
    assert proc.stdout.count("resuming from") == 2  # the partial results and the missing bank
    assert "results.json is damaged: missing 'primary'" in proc.stdout and "no bank/ folder" in proc.stdout
    assert "last.ckpt is damaged" in proc.stdout and "restarts from scratch" in proc.stdout
    assert proc.stdout.count("diverged (at step") == 3 and proc.stdout.count("skipping (force=true") == 3
    assert {job: (job / "results.json").stat().st_mtime_ns for job in diverged} == diverged  # left alone
    for job in (partial, no_bank, broken):
        assert RunDir(job).check().status == "done"
        results = read_results(job)
        assert results["metrics"] == expected[job]["metrics"] and results["global_step"] == 4
        bank = load_file(job / "bank" / "prompt_bank.safetensors")
        assert all(torch.equal(bank[k], banks[job][k]) for k in banks[job])
    assert list(broken.glob("checkpoints/last.ckpt.corrupt-*")) and not list(broken.glob(".results.json.*"))
    assert list(partial.glob("results.json.damaged-*"))


#: 3 epochs of 10 steps, a checkpoint at every epoch end
FORCED = RESUMABLE


def test_a_forced_rerun_that_is_killed_resumes_when_requeued(tmp_path):
    run_dir = tmp_path / "run"
    finished_run(run_dir)  # an earlier, complete run of the job
    forced = [sys.executable, "train.py", *FORCED, "force=true", f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen(
        forced, cwd=REPO_ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    marker, checkpoint = run_dir / ".compt-forced", run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 600
    while (
        not (marker.exists() and checkpoint.exists()) and proc.poll() is None and time.monotonic() < deadline
    ):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "results.json").exists(), "the forced run was not killed mid-training"
    assert torch.load(checkpoint, weights_only=True)["global_step"] < 30

    requeued = run_script("train.py", *FORCED, "force=true", f"hydra.run.dir={run_dir}")
    assert "resuming from" in requeued.stdout and "training starts from scratch" not in requeued.stdout
    assert read_results(run_dir)["global_step"] == 30 and not marker.exists()


@pytest.mark.parametrize("fault", ["unwritable folder", "empty split"])
def test_a_fault_before_training_is_one_line(tmp_path, fault):
    data = tmp_path / "data"
    shutil.copytree(REPO_ROOT / "src/compt/assets/demo_data", data)
    run_dir = tmp_path / "run"
    if fault == "unwritable folder":
        (tmp_path / "file").write_text("")
        run_dir, expected = tmp_path / "file" / "run", "compt: cannot write to"
    else:
        (data / "rte" / "validation.jsonl").write_text("")
        expected = "compt: rte/validation ("
    proc = run_script("train.py", *FAST, f"data.dir={data}", f"hydra.run.dir={run_dir}", check=False)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(expected) and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    if fault == "empty split":
        assert last.endswith("the split is empty (the file holds no rows)")
