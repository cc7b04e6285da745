"""Experiment loggers from config: W&B (online, or offline when not logged in), CSV (:class:`ResumableCSVLogger`),
or none."""

from __future__ import annotations

import csv
import logging
import netrc
import os
import warnings
from pathlib import Path
from typing import Any

from lightning_fabric.utilities.cloud_io import get_filesystem
from pytorch_lightning.loggers import CSVLogger, Logger, WandbLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment
from pytorch_lightning.utilities import rank_zero_info

from compt.errors import ConfigError

LOGGERS = ("wandb", "csv", "none")


class _DropAdverts(logging.Filter):
    """Drops Lightning's "💡 Tip: ... try installing litlogger" line, printed at every Trainer start."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


#: warnings that say nothing about the run (regular expressions matched at the start of the message)
KNOWN_NOISE = (
    # torchmetrics: evaluation sets are bounded (eval.max_samples), the buffer is small
    r"Metric `(Spearman|Pearson)Corrcoef` will save all targets and predictions",
    # torchmetrics: constant predictions; compt scores such a correlation as 0 (see README, metrics)
    r"The variance of predictions or target is close to zero",
    # Lightning 2.6 calling a torch.utils._pytree API that torch 2.13 deprecates
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
)


def quiet_known_noise() -> None:
    """Keep run logs to what the run did: drop Lightning's advert and :data:`KNOWN_NOISE` (idempotent)."""
    log = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if not any(isinstance(f, _DropAdverts) for f in log.filters):
        log.addFilter(_DropAdverts())
    for message in KNOWN_NOISE:
        warnings.filterwarnings("ignore", message=message)


def wandb_logged_in() -> bool:
    """Whether a W&B API key is available (environment or ~/.netrc)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def run_group(overrides: list[str]) -> str:
    """The W&B group of a run: its overrides minus the seed, so a dashboard averages over seeds."""
    kept = sorted(o for o in overrides if not o.lstrip("+~").startswith(("seed=", "hydra.", "force=")))
    return ",".join(kept) or "default"


def build_logger(
    kind: str, save_dir: Path, group: str, name: str, config: dict[str, Any], wandb_options: dict[str, Any]
) -> Logger | bool:
    """``wandb`` | ``csv`` | ``none``. W&B falls back to offline mode (one notice) when not logged in."""
    if kind == "none":
        return False
    if kind == "csv":
        return ResumableCSVLogger(save_dir=str(save_dir), name="csv", version="")
    if kind != "wandb":
        raise ConfigError(f"logger={kind!r}; choose one of {', '.join(LOGGERS)}")
    mode = os.environ.get("WANDB_MODE") or wandb_options.get("mode")
    if mode is None:
        mode = "online" if wandb_logged_in() else "offline"
        if mode == "offline":
            rank_zero_info("W&B: not logged in, logging offline (sync later with `wandb sync`).")
    return WandbLogger(
        project=wandb_options.get("project", "compt"),
        entity=wandb_options.get("entity"),
        group=group,
        name=name,
        save_dir=str(save_dir),
        mode=mode,
        config=config,
        tags=list(wandb_options.get("tags") or []),
        reinit="finish_previous",
    )


def finish_wandb() -> None:
    """Close any open W&B run, so the next job of a sweep never inherits it."""
    try:
        import wandb

        if wandb.run is not None:
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
    scratch starts a new file. Only rank 0 writes, and the job's claim (:mod:`compt.claims`) keeps any other
    process out of the folder, so the file is never shared.
    """

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
