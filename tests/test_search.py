"""Hyperparameter search (hparams_search=optuna): tuned on a development split carved from the training data,
never on the test set; a relaunch continues the study, re-reporting finished trials from their folders."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from compt.errors import ConfigError
from compt.runs import write_json_atomic
from compt.sweeps.jobs import list_jobs
from compt.training.launch import register_job_folder_resolver
from compt.training.search import check_search, objective
from tests.helpers import REPO_ROOT, read_results, run_script

CONF = REPO_ROOT / "conf"
#: 3 trials of one demo epoch, validated on 4 development rows per task
SEARCH = [
    "hparams_search=optuna",
    "experiment=demo",
    "optim.epochs=1",
    "eval.max_samples=4",
    "data.validation_from_train=4",
    "trainer.enable_progress_bar=false",
    "hydra.sweeper.n_trials=3",
]


def test_the_optuna_preset_searches_the_learning_rates_and_tau0_on_k_development_rows(tmp_path):
    register_job_folder_resolver()  # as train.py's import of compt.training.launch does
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


@pytest.mark.slow
def test_a_three_trial_search_tunes_on_the_development_split_and_a_relaunch_continues_it(tmp_path):
    import optuna

    run_script("train.py", *SEARCH, f"hydra.sweep.dir={tmp_path}")
    storage = f"sqlite:///{tmp_path}/optuna.db"
    trials = optuna.load_study(study_name="compt", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    jobs = sorted(p.parent for p in tmp_path.glob("*/results.json"))
    assert len(jobs) == 3
    objectives = {}
    for job in jobs:
        results = read_results(job)
        validation = results["validation"]
        assert validation["from_train"] == 4 and validation["global_step"] == results["global_step"]
        objectives[results["config"]["router"]["tau0"]] = validation["metrics"]["val/avg"]
    # each trial's value is the final validation average of the job its parameters configured
    assert {t.params["router.tau0"]: t.value for t in trials} == pytest.approx(objectives)

    proc = run_script("train.py", *SEARCH, f"hydra.sweep.dir={tmp_path}")
    assert (
        proc.stdout.count("skipping") == 3
    )  # the seeded sampler proposes the same 3: read back, not retrained
    again = optuna.load_study(study_name="compt", storage=storage).trials
    assert [t.state.name for t in again] == ["COMPLETE"] * 6
    assert [t.value for t in again[3:]] == [t.value for t in trials]
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
