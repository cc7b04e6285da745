"""The run folder: what ``train.py`` writes for one run, and the one place that knows its layout.

::

    RUN_DIR/
      results.json           everything a report needs; written last and atomically, so a results.json with
                             ``"status": "complete"`` marks a finished run
      predictions.jsonl      one line per evaluated example (main mask)
      bank/                  the trained prompt bank (``PromptBank.save``)
      checkpoints/last.ckpt  the resume checkpoint (backbone left out)
      .hydra/                the composed config and the command-line overrides (Hydra)
      eval/                  ``compt evaluate``'s task × mask tables

:class:`RunDir` names these paths and reads and writes them; training, inference, evaluation, the report and
the sweep listing all go through it. :func:`locate_bank` / :func:`load_bank` accept a run folder or a bank
folder, wherever a user passes "a trained run".
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from omegaconf import DictConfig, OmegaConf

from compt.errors import IncompleteRunError, RunNotFoundError
from compt.prompts.bank import CONFIG_FILE as BANK_CONFIG_FILE
from compt.prompts.bank import PromptBank
from compt.utils import json_safe

RESULTS_FILE = "results.json"
PREDICTIONS_FILE = "predictions.jsonl"
BANK_DIR = "bank"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
HYDRA_DIR = ".hydra"
HYDRA_CONFIG = "config.yaml"
HYDRA_OVERRIDES = "overrides.yaml"
EVAL_DIR = "eval"
#: ``format_version`` of results.json
FORMAT_VERSION = 1
#: ``status`` of a finished run's results.json
COMPLETE = "complete"

JobStatus = Literal["done", "resume", "new"]


@dataclass(frozen=True)
class RunDir:
    """One run folder (it need not exist yet) and the files in it."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))  # a str is accepted too

    # ------------------------------------------------------------------ paths
    @property
    def results_file(self) -> Path:
        return self.path / RESULTS_FILE

    @property
    def predictions_file(self) -> Path:
        return self.path / PREDICTIONS_FILE

    @property
    def bank_dir(self) -> Path:
        return self.path / BANK_DIR

    @property
    def last_checkpoint(self) -> Path:
        return self.path / CHECKPOINT_DIR / LAST_CHECKPOINT

    @property
    def hydra_dir(self) -> Path:
        return self.path / HYDRA_DIR

    @property
    def eval_dir(self) -> Path:
        return self.path / EVAL_DIR

    # ------------------------------------------------------------------ state
    def is_run(self) -> bool:
        """Whether the folder looks like a run (it has a results.json or Hydra's ``.hydra/``)."""
        return self.results_file.is_file() or self.hydra_dir.is_dir()

    def is_complete(self) -> bool:
        """Whether the folder holds a finished run's ``results.json``."""
        try:
            self.complete_results()
        except IncompleteRunError:
            return False
        return True

    def status(self) -> JobStatus:
        """What launching this run again does: ``done`` (complete: skipped), ``resume`` (from
        ``checkpoints/last.ckpt``) or ``new``."""
        if self.is_complete():
            return "done"
        return "resume" if self.last_checkpoint.is_file() else "new"

    # ------------------------------------------------------------------ results.json
    def read_results(self) -> dict[str, Any]:
        """The parsed ``results.json``, whatever its status (``OSError``/``ValueError`` when absent or
        unreadable)."""
        return json.loads(self.results_file.read_text())

    def complete_results(self) -> dict[str, Any]:
        """The parsed ``results.json`` of a finished run.

        Raises:
            IncompleteRunError: the file is missing, unreadable or not complete (the message says which).
        """
        try:
            results = self.read_results()
        except (OSError, ValueError) as err:
            raise IncompleteRunError(f"unreadable {RESULTS_FILE} ({type(err).__name__}: {err})") from None
        status = results.get("status") if isinstance(results, dict) else None
        if status != COMPLETE:
            raise IncompleteRunError(f"{RESULTS_FILE} is not complete (status={status!r})")
        return results

    def write_results(self, results: dict[str, Any]) -> Path:
        """Write ``results.json`` atomically (NaN and infinities as ``null``)."""
        return write_json_atomic(self.results_file, results)

    def write_predictions(self, rows: list[dict[str, Any]], inputs: dict[str, list[dict]]) -> Path:
        """``predictions.jsonl``: one JSON line per evaluated example, sorted by task and example id, with its
        input and target text from ``inputs`` (``{task: eval rows}``, indexed by example id)."""
        rows = sorted(rows, key=lambda r: (r["task"], r["example_id"]))
        tmp = self.predictions_file.with_suffix(".tmp")
        with tmp.open("w") as handle:
            for row in rows:
                source = inputs.get(row["task"], [])
                extra = source[row["example_id"]] if row["example_id"] < len(source) else {}
                record = {**row, "input": extra.get("input_text"), "target": extra.get("target_text")}
                handle.write(json.dumps(json_safe(record)) + "\n")
        os.replace(tmp, self.predictions_file)
        return self.predictions_file

    # ------------------------------------------------------------------ config
    def overrides(self) -> list[str]:
        """The command-line overrides the run was launched with (Hydra's ``.hydra/overrides.yaml``).

        Raises:
            RunNotFoundError: the folder has no such file.
        """
        path = self.hydra_dir / HYDRA_OVERRIDES
        if not path.is_file():
            raise RunNotFoundError(
                f"{self.path} is not a run folder started by train.py (no {HYDRA_DIR}/{HYDRA_OVERRIDES})"
            )
        return [str(override) for override in OmegaConf.load(path)]

    def config(self) -> DictConfig:
        """The run's config: the resolved copy in ``results.json``, else Hydra's ``.hydra/config.yaml``.

        Raises:
            RunNotFoundError: the folder has neither.
        """
        try:
            return OmegaConf.create(self.read_results()["config"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
        hydra_config = self.hydra_dir / HYDRA_CONFIG
        if hydra_config.is_file():
            return OmegaConf.load(hydra_config)  # type: ignore[return-value]
        if not self.path.is_dir():
            raise RunNotFoundError(f"{self.path}: no such folder (expected a run folder written by train.py)")
        raise RunNotFoundError(
            f"{self.path} is not a compt run folder (no {RESULTS_FILE} and no {HYDRA_DIR}/{HYDRA_CONFIG})"
        )


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write JSON to a temporary file in the same folder, then rename: never a half-written file.
    NaN and infinities are written as ``null``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(json_safe(data), handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# ---------------------------------------------------------------------------------------------- banks
@dataclass(frozen=True)
class BankLocation:
    """Where a trained bank lives and, when known, the run folder around it."""

    bank_dir: Path
    run_dir: Path | None


def locate_bank(path: str | Path) -> BankLocation:
    """``path`` is a run folder (its ``bank/`` is used) or a bank folder itself.

    Raises:
        RunNotFoundError: neither holds a prompt bank.
    """
    path = Path(path)
    if (path / BANK_DIR / BANK_CONFIG_FILE).is_file():
        return BankLocation(path / BANK_DIR, path)
    if (path / BANK_CONFIG_FILE).is_file():
        parent = RunDir(path.parent)
        return BankLocation(path, parent.path if parent.is_run() else None)
    raise RunNotFoundError(
        f"{path} holds no prompt bank: expected a run folder with {BANK_DIR}/{BANK_CONFIG_FILE} "
        f"or a bank folder with {BANK_CONFIG_FILE}"
    )


def load_bank(path: str | Path, d_model: int | None = None) -> PromptBank:
    """The trained prompt bank of a run folder (or of a bank folder); ``d_model``, when given, is checked
    against the bank's hidden size."""
    return PromptBank.load(locate_bank(path).bank_dir, d_model=d_model)
