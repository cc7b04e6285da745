"""Sweeps: the paper's sweep configs expand to the expected jobs; toy sweeps through the submitit and joblib
launchers write one folder per job; relaunching a finished sweep trains nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from hydra import compose, initialize_config_dir

from compt.config.hydra import job_folder_name
from compt.report.aggregate import parse_overrides
from compt.runs.identity import result_overrides
from compt.sweeps.cli import main
from compt.sweeps.jobs import expand, list_jobs, sweep_names
from compt.training.loggers import run_group
from tests.helpers import REPO_ROOT, read_results, run_script

CONF = REPO_ROOT / "conf"

#: jobs per paper experiment (experiments/<name>/README.md)
EXPECTED_JOBS = {
    "table1": 5 * 3 * 3,  # methods (pt, pt_single, ssum, msum, mcat) x k x seeds
    "table2": 5 * 3 * 3,
    "table3_4": 2 * 3,  # task sets x methods
    "table7": 2 * 3 * 3,  # with/without mnli x methods x seeds
    "fig2": 2 * 3 * 5 * 3,  # task sets x methods x n_sources x seeds
    "fig3_4": 3 * 2 * 3 * 3,  # methods x task sets x n_sources x seeds
    "fig5": 2 * 3 * 5 * 3,  # learned/constant x methods x n_sources x seeds
    "fig7": 3 * 4 * 2 * 3,  # methods x private lr x epochs x seeds
    "fig6": 2 * 2 * 3,  # constant/learned x methods (ssum, mcat) x seeds
    "fig_a1": 3,  # seeds (ssum)
    "baselines": 5 * 3 * 3,  # pt, ssum, spot, attempt, mpt x k x seeds
    "peft_baselines": 3 * 3 * 3,  # ssum, lora, prefix x k x seeds
}

#: the bundled demo data, as a path relative to the repository root (where run_script runs)
DEMO_DATA = "src/compt/assets/demo_data"
DEMO_DATA_ESCAPED = DEMO_DATA.replace("/", "%2F")

#: a toy sweep's jobs: one optimizer step each (the launcher tests add ``method=...``: one job per value)
TOY = ["experiment=demo", "trainer.max_steps=1", "eval.max_samples=2"]


def test_every_paper_experiment_has_a_sweep_a_readme_and_the_expected_job_count():
    assert sweep_names(CONF) == sorted(EXPECTED_JOBS)
    for name, count in EXPECTED_JOBS.items():
        jobs = expand(name, config_dir=CONF)
        assert len(jobs) == count, name
        assert len({tuple(sorted(job)) for job in jobs}) == count, f"{name}: duplicate jobs"
        readme = (REPO_ROOT / "experiments" / name / "README.md").read_text()
        assert f"+sweep={name}" in readme and "GPU-h" in readme


def test_listed_folders_are_named_after_the_swept_values(tmp_path):
    jobs = list_jobs("table3_4", [f"paths.log_dir={tmp_path}"], CONF)
    names = sorted(job.folder.name for job in jobs)
    assert {job.folder.parent for job in jobs} == {tmp_path / "multirun" / "table3_4"}
    assert names[0] == "method=mcat,seed=1,tasks=glue"  # +sweep, name and paths.log_dir are not in the name
    assert {job.status for job in jobs} == {"new"}
    fig3 = list_jobs("fig3_4", ["method=ssum", "tasks=glue", "n_sources=2", "seed=1"], CONF)
    assert len(fig3) == 1  # command-line values replace the sweep's


def test_job_folder_names_are_one_folder_and_at_most_255_bytes():
    assert job_folder_name("k=8,method=ssum") == "k=8,method=ssum"
    assert job_folder_name("model.name=google/t5-base,data.dir=/a/b") == (
        "model.name=google%2Ft5-base,data.dir=%2Fa%2Fb"
    )
    assert job_folder_name("x=50%") == "x=50%25"  # "%" escaped too, so names map back to overrides
    long = ",".join(f"optim.lr_key_{i}=0.{i:04d}" for i in range(30))
    name = job_folder_name(long)
    assert len(name.encode()) <= 255 and "/" not in name
    assert name.startswith(long[:200]) and name[200] == "~" and len(name) == 213
    assert job_folder_name(long) == name  # stable across relaunches
    assert job_folder_name(long.replace("0.0029", "0.0030")) != name  # differs where the cut text agrees


#: settings that cannot change a result: a job launched with any of them is the job launched without
NON_RESULT = [
    "logger=[csv,tensorboard]",
    "+logger.tensorboard.log_graph=true",
    "+callbacks=rich_progress_bar",
    "+callbacks.lr._target_=pytorch_lightning.callbacks.LearningRateMonitor",
    "+callbacks.lr.logging_interval=step",
    "claim.heartbeat_s=5",
    "claim.stale_after_s=900",
    "callbacks.checkpoint_every_n_epochs=2",
    "callbacks.keep_last_checkpoint=false",
    "trainer.enable_progress_bar=false",
    "jobs_per_gpu=2",
    "force=true",
]


def test_settings_that_cannot_change_a_result_stay_out_of_job_folders(tmp_path):
    """Relaunching a sweep with another logger (or progress bar, claim timing...) finds its finished jobs."""
    base = [f"paths.log_dir={tmp_path}", "method=ssum,msum", "k=8"]
    plain = [job.folder for job in list_jobs(None, base, CONF)]
    assert [f.name for f in plain] == ["k=8,method=ssum", "k=8,method=msum"]
    assert [job.folder for job in list_jobs(None, [*base, *NON_RESULT], CONF)] == plain
    mixed = list_jobs(None, [*base, "+callbacks=[early_stopping,rich_progress_bar]"], CONF)
    assert (
        mixed[0].folder.name == "+callbacks=[early_stopping],k=8,method=ssum"
    )  # early stopping does change it


@pytest.mark.parametrize(
    "overrides",
    [
        ["method=mcat", "k=8", "seed=2", "n_sources=4", "+callbacks=early_stopping"],
        ["tasks=[rte,mrpc]", "optim.lr.private=0.3", "model.name=google/t5-base-lm-adapt", "name=x"],
        ["+sweep=table1", "k=32", "method=msum", "seed=3", "trainer.devices=2", "paths.log_dir=/tmp/x"],
    ],
)
def test_job_folders_without_such_settings_keep_their_names(overrides):
    """The names Hydra's ``override_dirname`` gave before (jobs already on disk) are unchanged."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    assert cfg.hydra.sweep.subdir == job_folder_name(cfg.hydra.job.override_dirname)


def test_a_group_and_a_report_row_leave_out_the_seed_and_what_cannot_change_a_result():
    overrides = ["method=ssum", "seed=2", "k=8", *NON_RESULT, "+callbacks=[early_stopping,rich_progress_bar]"]
    assert run_group(overrides) == "+callbacks=[early_stopping],k=8,method=ssum"
    assert parse_overrides(overrides) == {"callbacks": "[early_stopping]", "k": "8", "method": "ssum"}
    assert result_overrides(["seed=2", "+callbacks=[device_stats_monitor]", "logger=none"]) == ["seed=2"]
    # the tested model changes with restore_best: its own job and row (the checkpoint cadence does not)
    restored = ["callbacks.restore_best=true", "callbacks.keep_last_checkpoint=false"]
    assert result_overrides(restored) == ["callbacks.restore_best=true"]
    assert run_group(["seed=1", "logger=csv"]) == "default"


def test_listing_names_long_and_slashed_overrides_like_a_launch(tmp_path):
    jobs = list_jobs("table3_4", [f"paths.log_dir={tmp_path}", "model.name=google/t5-base-lm-adapt"], CONF)
    assert all(job.folder.parent == tmp_path / "multirun" / "table3_4" for job in jobs)
    assert all("model.name=google%2Ft5-base-lm-adapt" in job.folder.name for job in jobs)
    many = ["data.max_source_length=256", *(f"+extra_key_{i}=value_{i:03d}" for i in range(20))]
    jobs = list_jobs("table3_4", [f"paths.log_dir={tmp_path}", *many], CONF)
    assert all(len(job.folder.name.encode()) <= 255 and "~" in job.folder.name for job in jobs)
    assert len({job.folder for job in jobs}) == len(jobs) == 6


def test_cli_lists_one_line_per_job(capsys):
    assert main(["list", "table3_4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6 and all(line.split()[0] in {"done", "resume", "new"} for line in lines)
    assert main(["list", "no_such_sweep"]) == 2


def _sweep(tmp_path, launcher: list[str]):
    return run_script("train.py", "-m", *TOY, *launcher, f"hydra.sweep.dir={tmp_path}", fresh=True)


def _check_jobs_and_relaunch(tmp_path, launcher: list[str]) -> str:
    """Run the toy sweep, check its folders against ``compt sweep list``, relaunch it; the relaunch output."""
    _sweep(tmp_path, launcher)
    jobs = list_jobs(None, [*TOY, *launcher, f"hydra.sweep.dir={tmp_path}"], CONF)
    assert sorted(p.parent for p in tmp_path.glob("*/results.json")) == sorted(j.folder for j in jobs)
    assert all(read_results(j.folder)["global_step"] == 1 for j in jobs)
    assert {j.status for j in jobs} == {"done"}
    before = _mtimes(jobs)
    proc = _sweep(tmp_path, launcher)
    assert _mtimes(jobs) == before  # nothing trained, nothing rewritten
    return proc.stdout + proc.stderr


def _mtimes(jobs) -> dict:
    names = ("results.json", "predictions.jsonl", "checkpoints/last.ckpt")
    return {(j.folder, n): (j.folder / n).stat().st_mtime_ns for j in jobs for n in names}


@pytest.mark.slow
def test_submitit_local_sweep_and_relaunch_runs_nothing(tmp_path):
    # a value with "/" (a path): one flat folder per job, named in the pickled job as in the listing; one job
    # (each submitit job is a process of its own: a second would prove nothing more)
    _check_jobs_and_relaunch(
        tmp_path, ["method=pt", "hydra/launcher=submitit_local", f"data.dir={DEMO_DATA}"]
    )
    folders = sorted(p.parent.name for p in tmp_path.glob("*/results.json"))
    assert folders == [
        f"data.dir={DEMO_DATA_ESCAPED},eval.max_samples=2,experiment=demo,method=pt,trainer.max_steps=1"
    ]
    logs = "".join(p.read_text() for p in (tmp_path / ".submitit").glob("*/*_log.out"))
    assert logs.count("skipping") == 1  # the second launch's job
    assert logs.count("wrote ") == 1  # the first launch's


@pytest.mark.slow
def test_joblib_sweep_runs_jobs_in_parallel_processes_and_relaunch_runs_nothing(tmp_path):
    launcher = ["method=pt,ssum", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    output = _check_jobs_and_relaunch(tmp_path, launcher)
    assert output.count("skipping") == 2 and "wrote " not in output


@pytest.mark.slow
def test_sigterm_stops_a_sweep_naming_its_jobs_that_never_started_and_a_relaunch_finishes_it(tmp_path):
    args = [
        "-m",
        "experiment=demo",
        "optim.epochs=5",
        "eval.max_samples=4",
        "trainer.enable_progress_bar=false",
    ]
    args += ["callbacks.checkpoint_every_n_epochs=1", "seed=1,2", f"hydra.sweep.dir={tmp_path}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.Popen(
        [sys.executable, "train.py", *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 600
    while not list(tmp_path.glob("*seed=1*/checkpoints/last.ckpt")) and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)  # as SLURM, Kubernetes or `kill` would, while the first job trains
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    first = next(tmp_path.glob("*seed=1*"))
    line = stderr.strip().splitlines()[-1]
    assert line.startswith(f"compt: SIGTERM: stopped {first} "), stderr[-3000:]
    assert f"saved {first}/checkpoints/last.ckpt; relaunch the same command to resume the sweep" in line
    assert line.endswith("never started: 1 job(s): seed=2") and "Traceback" not in stderr
    assert not (first / "results.json").exists() and not (first / ".compt-claim").exists()
    assert not list(tmp_path.glob("*seed=2*"))
    assert len(list((tmp_path / ".compt-launches").glob("*.yaml"))) == 1  # this launch's record

    relaunch = run_script("train.py", *args)
    assert relaunch.stdout.count("resuming from") == 1  # the stopped job; the other starts
    assert [read_results(p.parent)["global_step"] for p in sorted(tmp_path.glob("*/results.json"))] == [
        20,
        20,
    ]


def test_launcher_configs_compose():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(CONF), version_base="1.3"):
        slurm = compose("train", ["hydra/launcher=slurm"], return_hydra_config=True).hydra.launcher
        local = compose("train", ["hydra/launcher=submitit_local"], return_hydra_config=True).hydra.launcher
        joblib = compose("train", ["hydra/launcher=joblib"], return_hydra_config=True).hydra.launcher
    assert slurm._target_.endswith("SlurmLauncher") and slurm.gpus_per_node == 1
    assert slurm.max_num_timeout > 0 and {"partition", "account", "array_parallelism"} <= set(slurm)
    assert local._target_.endswith("LocalLauncher") and joblib._target_.endswith("JoblibLauncher")
