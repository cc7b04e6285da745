"""Hyperparameter search (hparams_search=optuna): tuned on a development split carved from the training data,
never on the test set; a relaunch continues the study (interrupted trials marked and re-run, no duplicate rows)
and two searches at once share its trials out."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from compt.config.hydra import register_job_folder_resolver
from compt.errors import ConfigError
from compt.jobs.search import check_search, objective
from compt.jobs.search_sweeper import study_creation_lock
from compt.runs import write_json_atomic
from compt.sweeps.jobs import list_jobs
from tests.helpers import REPO_ROOT, read_results, run_script

CONF = REPO_ROOT / "conf"
#: 3 trials of three demo epochs (a checkpoint at each), validated on 4 development rows per task
SEARCH = [
    "hparams_search=optuna",
    "experiment=demo",
    "optim.epochs=3",
    "callbacks.checkpoint_every_n_epochs=1",
    "eval.max_samples=4",
    "data.validation_from_train=4",
    "trainer.enable_progress_bar=false",
    "hydra.sweeper.n_trials=3",
]


def test_the_optuna_preset_searches_the_learning_rates_and_tau0_on_k_development_rows(tmp_path):
    register_job_folder_resolver()  # as train.py does (compt.config.hydra.register_config)
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(
            "train", ["hparams_search=optuna", "k=8", f"paths.log_dir={tmp_path}"], return_hydra_config=True
        )
    assert cfg.optimized_metric == "val/avg" and cfg.data.validation_from_train == 8  # k per task
    sweeper = cfg.hydra.sweeper
    assert set(sweeper.params) == {"optim.lr.router", "optim.lr.sources", "optim.lr.private", "router.tau0"}
    assert sweeper.direction == "maximize" and sweeper.study_name == "compt"
    storage = OmegaConf.select(cfg, "hydra.sweeper.storage")
    assert storage == f"sqlite:///{tmp_path}/multirun/default/optuna.db"
    assert (tmp_path / "multirun" / "default").is_dir()  # sqlite needs the folder before the first job


def test_a_search_has_no_job_list_in_advance():
    with pytest.raises(ConfigError, match="not known in advance .*OptunaSweeper"):
        list_jobs(None, ["hparams_search=optuna"], CONF)


def _config(**values) -> OmegaConf:
    return OmegaConf.create({"optimized_metric": "val/avg", "data": {"validation_from_train": 16}, **values})


def test_a_search_must_optimise_a_validation_metric_of_a_development_split():
    check_search(_config())
    check_search(_config(optimized_metric=None, data={"validation_from_train": 0}))  # no search: no check
    with pytest.raises(ConfigError, match="would tune on the test set"):
        check_search(_config(data={"validation_from_train": 0}))
    with pytest.raises(ConfigError, match="never a test result"):
        check_search(_config(optimized_metric="avg"))


def test_the_objective_of_a_finished_job_is_read_back_from_its_folder(tmp_path):
    results = {"status": "complete", "avg": 50.0, "validation": {"metrics": {"val/avg": 75.0}}}
    write_json_atomic(tmp_path / "done" / "results.json", results)
    assert objective(_config(), None, tmp_path / "done") == 75.0  # skipped job: read back
    assert objective(_config(), results, tmp_path / "done") == 75.0
    assert objective(_config(optimized_metric=None), results, tmp_path) == 50.0  # plain runs: the test avg
    assert objective(_config(), None, tmp_path / "never-ran") is None
    with pytest.raises(ConfigError, match=r"val/rte/accuracy is not a validation metric .*val/avg"):
        objective(_config(optimized_metric="val/rte/accuracy"), results, tmp_path)


def _trials(folder: Path) -> list:
    import optuna

    return optuna.load_study(study_name="compt", storage=f"sqlite:///{folder}/optuna.db").trials


def _search(folder: Path, *extra: str) -> list[str]:
    return [sys.executable, "train.py", *SEARCH, *extra, f"hydra.sweep.dir={folder}"]


@pytest.fixture(scope="module")
def two_searches_at_once(tmp_path_factory) -> Path:
    """The same search launched twice at once into one folder (both processes finish)."""
    folder = tmp_path_factory.mktemp("search") / "both"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled"}
    procs = [
        subprocess.Popen(
            _search(folder),
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    return folder


@pytest.mark.slow
def test_two_identical_searches_at_once_share_the_trials_and_fail_none(two_searches_at_once):
    trials = _trials(two_searches_at_once)
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3  # not 6 rows, none FAIL for the other's
    jobs = sorted(p.parent for p in two_searches_at_once.glob("*/results.json"))
    assert len(jobs) == 3
    objectives = {}
    for job in jobs:
        results = read_results(job)
        validation = results["validation"]
        assert validation["from_train"] == 4 and validation["global_step"] == results["global_step"]
        objectives[results["config"]["router"]["tau0"]] = validation["metrics"]["val/avg"]
    # each trial's value is the final validation average of the job its parameters configured
    assert {t.params["router.tau0"]: t.value for t in trials} == pytest.approx(objectives)


@pytest.mark.slow
def test_an_interrupted_search_marks_its_trial_and_relaunches_finish_it_like_an_uninterrupted_one(
    tmp_path, two_searches_at_once
):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.Popen(
        _search(tmp_path), cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 600
    while len(list(tmp_path.glob("*/checkpoints/last.ckpt"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)  # the second trial has trained an epoch
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 128 + signal.SIGINT, stderr[-3000:]
    assert "compt: SIGINT: stopped " in stderr and "Traceback" not in stderr
    assert "relaunch the same command to continue: finished trials are kept, this one resumes" in stderr
    first = _trials(tmp_path)
    assert [t.state.name for t in first] == ["COMPLETE", "FAIL"]  # not RUNNING
    assert first[1].user_attrs["compt_interrupted"].startswith("compt: SIGINT: stopped ")
    best = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert best["trials_complete"] == 1 and best["best_value"] == first[0].value

    relaunch = run_script(*_search(tmp_path)[1:])
    assert relaunch.stdout.count("resuming from") == 1  # the interrupted trial's job, where it stopped
    rows = _trials(tmp_path)
    assert [t.state.name for t in rows] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert rows[2].params == first[1].params  # re-run with the same parameters
    # the same trials and values as the search that was never interrupted
    uninterrupted = [(t.params, t.value) for t in _trials(two_searches_at_once)]
    assert [(t.params, t.value) for t in rows if t.state.name == "COMPLETE"] == uninterrupted

    again = run_script(*_search(tmp_path)[1:])
    assert "3 of 3 trials complete" in again.stdout + again.stderr and "resuming from" not in again.stdout
    assert len(_trials(tmp_path)) == 4  # a relaunch of a finished search adds no row
    assert [p.name for p in (tmp_path / ".compt-trials").iterdir()] == ["ask"]  # no trial is held
    assert len(list(tmp_path.glob("*/results.json"))) == 3


@pytest.mark.slow
def test_a_search_on_the_test_set_stops_with_one_message(tmp_path):
    sweep = tmp_path / "sweep"
    on_test = [a.replace("validation_from_train=4", "validation_from_train=0") for a in SEARCH]
    proc = run_script("train.py", *on_test, f"hydra.sweep.dir={sweep}", check=False)
    assert proc.returncode == 1
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .startswith("compt: optimized_metric=val/avg would tune on the test set")
    ), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not sweep.exists()  # stopped before the study was opened


def _create_study_at_once(folder: str, barrier) -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    barrier.wait()
    with study_creation_lock(Path(folder)):
        optuna.create_study(study_name="compt", storage=f"sqlite:///{folder}/optuna.db", load_if_exists=True)


def test_searches_starting_at_the_same_moment_create_their_study_in_turn(tmp_path):
    # without the lock, about half of such processes fail (alembic's version row inserted twice)
    context = multiprocessing.get_context("fork")
    for attempt in range(3):
        barrier = context.Barrier(4)
        folder = tmp_path / str(attempt)
        procs = [context.Process(target=_create_study_at_once, args=(str(folder), barrier)) for _ in range(4)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(timeout=120)
        assert [proc.exitcode for proc in procs] == [0] * 4
