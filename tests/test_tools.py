"""The researcher's tools: loggers and callbacks from the command line, one W&B run per job, ``resume=`` for
single runs, provenance in results.json, several jobs per GPU."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from compt.errors import ConfigError, RunNotFoundError
from compt.jobs.launch import gpu_lease, joblib_gpu, lease_slots
from compt.jobs.resume_run import resume_arguments
from compt.runs.provenance import git_state, package_version
from compt.training import loggers
from compt.training.callbacks import extra_callbacks
from compt.training.loggers import build_loggers, wandb_mode, wandb_run_id
from tests.helpers import FAST, REPO_ROOT, read_results, run_script

CONF = REPO_ROOT / "conf"
#: the FAST demo (2 epochs of 4 steps, a checkpoint at each epoch end), bit-reproducible on CPU
RUN = [*FAST, "deterministic=true"]
#: kills a fresh run at the start of its second epoch, after the first epoch's checkpoint
KILL = "+callbacks.kill._target_=tests.interrupt.KillFreshRun"
JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"


def _composed(*overrides: str):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("train", list(overrides))


# ---------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """A single run (timestamped folder) with CSV, TensorBoard and offline W&B loggers and early stopping,
    killed after its first epoch's checkpoint, then resumed with ``resume=RUN_DIR`` alone."""
    root = tmp_path_factory.mktemp("single")
    wandb = {"WANDB_MODE": "offline"}
    extra = ["logger=[csv,tensorboard,wandb]", "+callbacks=early_stopping", KILL, f"paths.log_dir={root}"]
    killed = run_script("train.py", *RUN, *extra, env=wandb, check=False, fresh=True)
    assert killed.returncode == -9, killed.stderr[-3000:]
    (run_dir,) = (root / "outputs").glob("*/*")  # outputs/<date>/<time>
    killed_at = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert killed_at == 4 and not (run_dir / "results.json").exists()
    runs_before = sorted(p.name for p in (run_dir / "wandb").glob("offline-run-*"))
    proc = run_script("train.py", f"resume={run_dir}", env=wandb, fresh=True)
    return SimpleNamespace(dir=run_dir, stdout=proc.stdout, wandb_runs_before=runs_before)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("clean") / "run"
    run_script("train.py", *RUN, "logger=none", f"hydra.run.dir={run_dir}", fresh=True)
    return run_dir


@pytest.mark.slow
def test_a_killed_single_run_resumes_with_resume_to_the_same_step_and_metrics(resumed, uninterrupted):
    assert "resuming from" in resumed.stdout
    a, b = read_results(uninterrupted), read_results(resumed.dir)
    assert a["global_step"] == b["global_step"] == 8
    assert b["curves"]["train_loss"] == a["curves"]["train_loss"]  # each epoch once, the same losses
    assert b["metrics"] == a["metrics"] and b["avg"] == a["avg"]
    assert b["router_weights"] == a["router_weights"]
    assert "logger=[csv,tensorboard,wandb]" in b["overrides"]  # the run's own overrides, not resume=
    assert not any(o.startswith("resume=") for o in b["overrides"])


@pytest.mark.slow
def test_loggers_and_callbacks_from_the_command_line(resumed):
    assert (resumed.dir / "csv" / "metrics.csv").is_file()
    assert "val/avg" in (resumed.dir / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert list((resumed.dir / "tensorboard").glob("events.out.tfevents.*"))
    checkpoint = torch.load(resumed.dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert any(key.startswith("EarlyStopping") for key in checkpoint["callbacks"])


@pytest.mark.slow
def test_the_wandb_run_id_is_the_same_before_and_after_resume(resumed):
    runs = sorted(p.name for p in (resumed.dir / "wandb").glob("offline-run-*"))
    assert len(resumed.wandb_runs_before) == 1 and len(runs) == 2
    ids = {name.rsplit("-", 1)[1] for name in runs}
    expected = hashlib.sha256(str(resumed.dir.resolve()).encode()).hexdigest()[:16]
    assert ids == {expected}


@pytest.mark.slow
def test_the_demo_results_record_their_provenance(uninterrupted):
    record = read_results(uninterrupted)["provenance"]
    assert record["compt"] == "0.1.0" and record["python"].count(".") == 2
    assert all(record[name] for name in ("torch", "transformers", "lightning", "datasets"))
    assert record["device"]["type"] == "cpu" and record["device"]["count"] == 1 and record["device"]["name"]
    assert record["precision"] == "32-true"
    if git_state(REPO_ROOT) is not None:  # run from a checkout (a wheel install records null)
        assert len(record["git"]["commit"]) == 40 and isinstance(record["git"]["dirty"], bool)


# ---------------------------------------------------------------------------------------------- configs
def test_logger_and_callback_groups_are_target_configs():
    several = _composed("logger=[csv,tensorboard]", "+callbacks=[early_stopping,rich_progress_bar]")
    assert set(several.logger) == {"csv", "tensorboard"}
    assert several.logger.csv._target_ == "compt.training.loggers.ResumableCSVLogger"
    assert several.logger.tensorboard._target_ == "pytorch_lightning.loggers.TensorBoardLogger"
    assert several.callbacks.early_stopping.monitor == "val/avg"
    assert several.callbacks.checkpoint_every_n_epochs == 5  # compt's settings stay where users type them
    assert set(_composed("logger=many").logger) == {"csv", "tensorboard", "wandb"}
    assert not _composed("logger=none").logger
    callbacks = extra_callbacks(several.callbacks)
    assert [type(c).__name__ for c in callbacks] == ["EarlyStopping", "RichProgressBar"]


def test_a_logger_or_callback_that_cannot_be_made_is_one_config_error(tmp_path):
    typo = OmegaConf.create({"x": {"_target_": "pytorch_lightning.callbacks.EarlyStopping", "monitr": "a"}})
    with pytest.raises(ConfigError, match=r"callbacks.x: cannot create .*EarlyStopping.*monitr"):
        extra_callbacks(typo)
    with pytest.raises(ConfigError, match="callbacks.y has no _target_"):
        extra_callbacks(OmegaConf.create({"y": {"patience": 3}}))
    if (
        importlib.util.find_spec("mlflow") is None
    ):  # compt's [loggers] extra not installed: one line naming the fix
        mlflow = _composed("logger=mlflow").logger
        with pytest.raises(ConfigError, match=r"logger.mlflow: cannot create .*MLFlowLogger.*pip install"):
            build_loggers(mlflow, tmp_path, "g", "n", {}, resuming=False)


def test_loggers_write_inside_the_run_folder(tmp_path):
    section = _composed("logger=[csv,tensorboard]").logger
    made = build_loggers(section, tmp_path, "g", "g,seed=1", {"k": 16}, resuming=False)
    assert [Path(logger.log_dir) for logger in made] == [tmp_path / "csv", tmp_path / "tensorboard"]
    assert made[0].experiment.hparams["k"] == 16  # the resolved config as hyperparameters


def test_mlflow_gets_a_sqlite_store_in_the_run_folder_and_the_jobs_name(tmp_path, monkeypatch):
    """MLflow ≥ 3 refuses its plain-folder store (``./mlruns``, Lightning's default) unless
    MLFLOW_ALLOW_FILE_STORE=true: without a tracking server, compt gives it a sqlite store in the run folder."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    section = _composed("logger=mlflow").logger
    settings = loggers.mlflow_settings(section.mlflow, tmp_path / "mlruns", "method=msum,seed=2")
    assert settings["run_name"] == "method=msum,seed=2"
    assert settings["tracking_uri"] == f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    assert settings["artifact_location"] == (tmp_path / "mlruns" / "artifacts").as_uri()
    server = OmegaConf.create({"tracking_uri": "http://mlflow:5000", "run_name": "mine"})
    assert loggers.mlflow_settings(server, tmp_path, "job") == {}  # the user's server and name win
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert "tracking_uri" not in loggers.mlflow_settings(
        _composed("logger=mlflow").logger.mlflow, tmp_path, "j"
    )


def test_mlflow_logs_a_run_named_after_the_job_that_its_client_reads(tmp_path, monkeypatch):
    """The real MLflow (compt's [loggers] extra; skipped without it): no file-store refusal, one run per job."""
    if importlib.util.find_spec("mlflow") is None:  # mlflow or mlflow-skinny
        pytest.skip("mlflow is not installed (pip install -e '.[loggers]')")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    section = _composed("logger=mlflow").logger
    [logger] = build_loggers(
        section, tmp_path, "method=msum", "method=msum,seed=2", {"k": 16}, resuming=False
    )
    logger.log_metrics({"val/avg": 50.0}, step=3)
    logger.finalize("success")
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("compt").experiment_id])
    assert run.info.run_name == "method=msum,seed=2" and run.data.metrics["val/avg"] == 50.0
    assert run.data.params["k"] == "16"


def test_wandb_run_ids_follow_the_folder_and_restart_with_the_training(tmp_path, monkeypatch):
    for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    base = hashlib.sha256(str(tmp_path.resolve()).encode()).hexdigest()[:16]
    assert wandb_run_id(tmp_path, resuming=False) == base
    assert wandb_run_id(tmp_path, resuming=True) == base  # resumed or requeued: the same W&B run
    assert wandb_run_id(tmp_path, resuming=False) == f"{base}-1"  # force=true: trained again, a new run
    assert wandb_run_id(tmp_path, resuming=True) == f"{base}-1"
    assert wandb_run_id(tmp_path, resuming=False) == f"{base}-2"


def test_wandb_mode_and_login_detection(monkeypatch, caplog):
    asked = {}

    def login(**kwargs):
        asked.update(kwargs)
        raise RuntimeError("WANDB_API_KEY invalid")

    import wandb

    monkeypatch.setattr(wandb, "login", login)
    assert loggers.wandb_logged_in() is False  # credentials W&B rejects count as not logged in
    assert asked == {"prompt": False, "verify": False}  # W&B's own lookup (WANDB_BASE_URL, netrc), no prompt
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode("online") == "disabled"
    monkeypatch.delenv("WANDB_MODE")
    assert wandb_mode("offline") == "offline"
    with caplog.at_level(logging.INFO):
        assert wandb_mode(None) == "offline"
    assert "not logged in, logging offline" in caplog.text
    monkeypatch.setattr(wandb, "login", lambda **kwargs: True)
    assert wandb_mode(None) == "online"


# ---------------------------------------------------------------------------------------------- resume=
def _run_folder(path: Path, overrides: list[str]) -> Path:
    (path / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(overrides), path / ".hydra" / "overrides.yaml")
    return path


def test_resume_expands_to_the_runs_own_overrides_and_folder(tmp_path):
    job = _run_folder(tmp_path / "k=8,method=ssum", ["experiment=demo", "k=8", "method=ssum"])
    args = resume_arguments(["--cfg", "job", f"resume={job}", "k=4"])
    assert args[:4] == ["--cfg", "job", "experiment=demo", "method=ssum"]  # k=4 replaces the saved k=8
    assert args[5] == "k=4"
    (run_dir,) = OverridesParser.create().parse_overrides([args[4]])
    assert run_dir.key_or_group == "hydra.run.dir" and run_dir.value() == str(job)  # "," and "=" kept
    assert resume_arguments(["k=4"]) == ["k=4"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["-m", "resume=X"], "relaunch a sweep"),
        (["resume=X", "resume=Y"], "more than once"),
        (["resume=X", "hydra.run.dir=Y"], "not both"),
        (["resume="], "needs a run folder"),
    ],
)
def test_resume_refuses_what_cannot_work(arguments, message):
    with pytest.raises(ConfigError, match=message):
        resume_arguments(arguments)


def test_resume_of_a_folder_that_is_no_run_or_a_search_trial_says_so(tmp_path):
    with pytest.raises(RunNotFoundError, match="not a run folder"):
        resume_arguments([f"resume={tmp_path}"])
    trial = _run_folder(tmp_path / "trial", ["hparams_search=optuna", "optim.lr.router=0.2"])
    with pytest.raises(ConfigError, match="relaunch the search's command"):
        resume_arguments([f"resume={trial}"])


# ---------------------------------------------------------------------------------------------- jobs per GPU
def test_slots_spread_jobs_over_the_gpus_before_sharing_one():
    assert lease_slots(2, preferred=1) == [(1, 0), (0, 0)]
    assert lease_slots(2, preferred=1, jobs_per_gpu=2) == [(1, 0), (0, 0), (1, 1), (0, 1)]


def test_jobs_per_gpu_lets_that_many_jobs_share_a_gpu_and_the_next_waits(tmp_path):
    with (
        gpu_lease(tmp_path, 2, preferred=0, jobs_per_gpu=2) as a,
        gpu_lease(tmp_path, 2, preferred=0, jobs_per_gpu=2) as b,
        gpu_lease(tmp_path, 2, preferred=0, jobs_per_gpu=2) as c,
        gpu_lease(tmp_path, 2, preferred=0, jobs_per_gpu=2) as d,
    ):
        assert (a, b, c, d) == (0, 1, 0, 1)
        got: list[int] = []

        def fifth() -> None:
            with gpu_lease(tmp_path, 2, preferred=0, poll_s=0.05, jobs_per_gpu=2) as index:
                got.append(index)

        waiting = threading.Thread(target=fifth)
        waiting.start()
        time.sleep(0.3)
        assert got == []  # 2 GPUs x 2 slots held: the fifth job waits
    waiting.join(timeout=5)
    assert got == [0]


def test_joblib_jobs_share_the_one_gpu_up_to_jobs_per_gpu(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # a one-GPU machine, without a GPU
    monkeypatch.setenv("COMPT_GPU_LOCK_DIR", str(tmp_path))
    hydra_cfg = OmegaConf.create({"launcher": {"_target_": JOBLIB}, "job": {"num": 3}})
    jobs = [OmegaConf.create({"trainer": {"devices": 1}, "jobs_per_gpu": 2}) for _ in range(2)]
    with joblib_gpu(jobs[0], hydra_cfg) as first, joblib_gpu(jobs[1], hydra_cfg) as second:
        assert first == second == 0 and all(list(job.trainer.devices) == [0] for job in jobs)
    assert "shared by up to 2 jobs" in capsys.readouterr().out
    zero = OmegaConf.create({"trainer": {"devices": 1}, "jobs_per_gpu": 0})
    with (
        pytest.raises(ConfigError, match="jobs_per_gpu must be a positive integer"),
        joblib_gpu(zero, hydra_cfg),
    ):
        pass


# ---------------------------------------------------------------------------------------------- provenance
def test_git_state_outside_a_checkout_and_unknown_packages_are_null(tmp_path):
    assert git_state(tmp_path) is None
    assert package_version("no-such-distribution-compt") is None
    assert package_version("torch")
