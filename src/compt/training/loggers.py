"""Experiment loggers from the ``logger`` config group: one ``_target_`` config per logger (csv, wandb,
tensorboard, mlflow, or several), filled in with what compt knows about the run; W&B online when logged in,
else offline with a notice, and one W&B run per job folder; the CSV log (:class:`ResumableCSVLogger`)
continued, never rewritten, by a resumed run."""

from __future__ import annotations

import csv
import hashlib
import inspect
import os
import sys
from pathlib import Path
from typing import Any

from lightning_fabric.utilities.cloud_io import get_filesystem
from omegaconf import DictConfig
from pytorch_lightning.core.saving import save_hparams_to_yaml
from pytorch_lightning.loggers import CSVLogger, Logger, MLFlowLogger, WandbLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment
from pytorch_lightning.utilities import rank_zero_info

from compt.atomic import atomic_path, write_text_atomic
from compt.config.targets import instantiate_target, target_class, target_entries, unset
from compt.runs import RUN_ELSEWHERE
from compt.runs.identity import group_overrides
from compt.training.spawn import launch_rank as process_rank

#: the file in ``<run>/wandb/`` that keeps the W&B run id of the folder's current training (:func:`wandb_run_id`)
WANDB_RUN_ID_FILE = "compt-run-id"
#: the sqlite database of ``logger=mlflow`` in its ``save_dir`` when no tracking server is named
MLFLOW_DB_FILE = "mlflow.db"
#: the folder of ``logger=mlflow``'s artifacts in its ``save_dir`` (with :data:`MLFLOW_DB_FILE`)
MLFLOW_ARTIFACTS_DIR = "artifacts"


def wandb_logged_in() -> bool:
    """Whether W&B finds credentials, through its own lookup (``wandb.login(prompt=False)``): the
    ``WANDB_API_KEY`` environment variable, W&B's settings files, or the ``~/.netrc`` entry of the server it
    talks to (``WANDB_BASE_URL``: a self-hosted server counts). Never prompts, never contacts the server to
    check the key; credentials W&B rejects count as not logged in."""
    try:
        import wandb

        return bool(wandb.login(prompt=False, verify=False))
    except Exception:
        return False


def run_group(overrides: list[str]) -> str:
    """The W&B group of a run: its overrides that can change the result, minus the seed
    (:func:`compt.runs.identity.group_overrides`), so a dashboard averages over seeds, whatever logged them."""
    return ",".join(group_overrides(overrides)) or "default"


def wandb_run_id(run_dir: Path, resuming: bool) -> str:
    """The W&B run id of the training in ``run_dir``: a stable hash of the folder's absolute path, so a resumed,
    relaunched or requeued job continues its W&B run (``resume="allow"``).

    The id is kept in ``<run>/wandb/compt-run-id``. A training that starts over in a folder that already had a
    W&B run (``force=true``, or killed before its first checkpoint) gets the next id, ``<hash>-1``, ``<hash>-2``,
    ..., so it opens a new W&B run instead of appending to the old one's history.
    """
    record = Path(run_dir) / "wandb" / WANDB_RUN_ID_FILE
    base = hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]
    previous = record.read_text().strip() if record.is_file() else ""
    if not previous:
        run_id = base
    elif resuming:
        run_id = previous
    else:
        restarts = previous.rpartition("-")[2] if "-" in previous else "0"
        run_id = f"{base}-{int(restarts) + 1 if restarts.isdigit() else 1}"
    if run_id != previous and process_rank() == 0:
        write_text_atomic(record, run_id + "\n")
    return run_id


def wandb_mode(requested: str | None) -> str:
    """``WANDB_MODE``, else ``requested`` (``logger.wandb.mode``), else online when :func:`wandb_logged_in`,
    else offline, with a notice."""
    mode = os.environ.get("WANDB_MODE") or requested
    if mode:
        return str(mode)
    if wandb_logged_in():
        return "online"
    rank_zero_info("W&B: not logged in, logging offline (sync later with `wandb sync`).")
    return "offline"


def build_loggers(
    section: DictConfig | None,
    run_dir: Path,
    group: str,
    name: str,
    config: dict[str, Any],
    resuming: bool,
) -> list[Logger]:
    """The loggers of the ``logger`` config section, one per ``_target_`` entry (none for ``logger=none``).

    compt fills in what the config leaves null: ``save_dir`` = the run folder (a relative one is taken inside
    it). For W&B also the group (overrides minus the seed), the name (group + seed), the run id
    (:func:`wandb_run_id`), ``resume="allow"``, the mode (:func:`wandb_mode`) and the resolved config; for
    MLflow the run name (``name``) and, without a tracking server, a sqlite store (:func:`mlflow_settings`);
    the loggers other than W&B get the resolved config as hyperparameters.

    Raises:
        ConfigError: an entry without ``_target_``, or a logger that cannot be created (e.g. its package is not
            installed), naming the entry and the cause.
    """
    loggers: list[Logger] = []
    for key, conf in target_entries(section, "logger").items():
        where = f"logger.{key}"
        cls = target_class(conf, where)
        kwargs: dict[str, Any] = {}
        if "save_dir" in inspect.signature(cls).parameters:
            kwargs["save_dir"] = str(_inside(run_dir, conf.get("save_dir")))
        is_wandb = issubclass(cls, WandbLogger)
        if is_wandb:
            kwargs.update(_wandb_settings(conf, run_dir, group, name, config, resuming))
        if issubclass(cls, MLFlowLogger):
            kwargs.update(mlflow_settings(conf, Path(kwargs["save_dir"]), name))
        logger = instantiate_target(conf, where, **kwargs)
        if not is_wandb and process_rank() == 0:  # before the Trainer tells Lightning the rank
            logger.log_hyperparams(config)
        loggers.append(logger)
    return loggers


def _inside(run_dir: Path, path: str | None) -> Path:
    """``path`` relative to the run folder (the folder itself when None); an absolute path as it is."""
    if path is None:
        return run_dir
    return Path(path) if Path(path).is_absolute() else run_dir / path


def _wandb_settings(
    conf: DictConfig, run_dir: Path, group: str, name: str, config: dict[str, Any], resuming: bool
) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "mode": wandb_mode(conf.get("mode")),
        "config": config,
        "reinit": "finish_previous",
    }
    defaults = {"group": group, "name": name, "resume": "allow"}
    settings.update({key: value for key, value in defaults.items() if unset(conf, key)})
    if unset(conf, "id") and settings["mode"] != "disabled":
        settings["id"] = wandb_run_id(run_dir, resuming)
    return settings


def mlflow_settings(conf: DictConfig, save_dir: Path, name: str) -> dict[str, Any]:
    """What compt fills in for ``logger=mlflow``: the run name (``name``, the job's: group + seed) unless the
    config sets ``run_name``, and, unless ``tracking_uri`` (or ``MLFLOW_TRACKING_URI``) names a server, a
    sqlite store ``<save_dir>/mlflow.db`` with the artifacts in ``<save_dir>/artifacts``.

    MLflow's plain-folder store (``./mlruns``, Lightning's default) is in maintenance mode since MLflow 3.x
    and refuses to open unless ``MLFLOW_ALLOW_FILE_STORE=true``; a database store works with every MLflow
    release compt supports. Browse it with ``mlflow ui --backend-store-uri sqlite:///<save_dir>/mlflow.db``.
    """
    settings: dict[str, Any] = {}
    if unset(conf, "run_name"):
        settings["run_name"] = name
    if unset(conf, "tracking_uri"):
        save_dir.mkdir(parents=True, exist_ok=True)  # sqlite creates the file, not its folder
        settings["tracking_uri"] = f"sqlite:///{save_dir.absolute() / MLFLOW_DB_FILE}"
        if unset(conf, "artifact_location"):
            settings["artifact_location"] = (save_dir.absolute() / MLFLOW_ARTIFACTS_DIR).as_uri()
    return settings


def finish_wandb() -> None:
    """Close any open W&B run, so the next job of a sweep never inherits it (a process that never imported
    W&B has none: it is not imported for this, a second of CPU at every run's end)."""
    wandb = sys.modules.get("wandb")
    try:
        if wandb is not None and wandb.run is not None:
            wandb.finish()
    except Exception:
        pass


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer, except that it keeps an existing ``metrics.csv`` (continuing its header) and
    rewrites it only atomically (a temporary file renamed into place), so a kill never loses rows."""

    def __init__(self, log_dir: str) -> None:  # no super().__init__: it deletes metrics.csv
        self.hparams: dict[str, Any] = {}
        self.metrics: list[dict[str, float]] = []
        self.log_dir = log_dir
        self.metrics_file_path = os.path.join(log_dir, self.NAME_METRICS_FILE)
        self._fs = get_filesystem(log_dir)
        self._fs.makedirs(log_dir, exist_ok=True)
        self.metrics_keys: list[str] = list(self._read()[0])

    def log_hparams(self, params: dict[str, Any]) -> None:
        """Record the hyperparameters and rewrite ``hparams.yaml`` whole or not at all (Lightning truncates it
        first, so a full disk left a 0-byte file)."""
        self.hparams.update(params)
        with atomic_path(os.path.join(self.log_dir, self.NAME_HPARAMS_FILE), elsewhere=RUN_ELSEWHERE) as tmp:
            save_hparams_to_yaml(tmp, self.hparams)

    def _read(self) -> tuple[list[str], list[dict[str, str]]]:
        """The file's header and rows (empty when there is no file)."""
        try:
            with open(self.metrics_file_path, newline="") as handle:
                reader = csv.DictReader(handle)
                rows = list(reader)
                return list(reader.fieldnames or []), rows
        except FileNotFoundError:
            return [], []

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        self._write(fieldnames, self._read()[1])

    def _write(self, fieldnames: list[str], rows: list[dict[str, str]]) -> None:
        partial = self.metrics_file_path + ".tmp"
        with open(partial, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fieldnames)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(partial, self.metrics_file_path)

    def rows_written(self) -> int:
        """Write what is buffered, then count the file's rows."""
        self.save()
        return len(self._read()[1])

    def keep_rows(self, count: int) -> None:
        """Drop buffered rows and every row of the file after the first ``count`` (0: start a new file)."""
        self.metrics = []
        header, rows = self._read()
        if len(rows) > count:
            self._write(header, rows[:count])


class ResumableCSVLogger(CSVLogger):
    """Lightning's CSV logger whose ``metrics.csv`` survives a resumed run: every logged step once.

    A relaunch keeps the file and appends to it (Lightning's logger deletes it); a header change (a new metric)
    rewrites it atomically. The resume checkpoint records how many rows the file had when it was written
    (:class:`compt.training.callbacks.ResumeState` calls :meth:`rows_written`), and the resumed run first drops
    the rows logged after that checkpoint (:meth:`keep_rows`), which it logs again; a run that starts from
    scratch starts a new file. Only rank 0 writes, and the job's claim (:mod:`compt.runs.claims`) keeps any other
    process out of the folder, so the file is never shared.
    """

    #: set once the job's claim was taken over (:meth:`stop_writing`)
    _frozen = False

    @property
    @rank_zero_experiment
    def experiment(self) -> _AppendingWriter:  # type: ignore[override]
        if self._experiment is None:
            self._experiment = _AppendingWriter(self.log_dir)
        return self._experiment

    def rows_written(self) -> int:
        """Flush the buffered rows and return the number of rows in ``metrics.csv``."""
        return self.experiment.rows_written()

    def keep_rows(self, count: int) -> None:
        """Keep only the first ``count`` rows of ``metrics.csv`` (the rows logged before a checkpoint)."""
        self.experiment.keep_rows(count)

    def stop_writing(self) -> None:
        """Drop the buffered rows and write nothing more (the job's claim was taken over: the folder is
        another process's now)."""
        self._frozen = True
        if self._experiment is not None:
            self._experiment.metrics = []

    def save(self) -> None:
        if not self._frozen:
            super().save()
