"""The run folder: what ``train.py`` writes for one run, and the one place that knows its layout.

::

    RUN_DIR/
      results.json           everything a report needs; written last and atomically, so a results.json with
                             ``"status": "complete"`` marks a finished run (``"diverged"``: a run stopped
                             by a non-finite loss or prompt, never averaged)
      predictions.jsonl      one line per evaluated example (main mask: the first of eval.masks)
      mask_predictions.jsonl the same under every other evaluated mask, each line naming its mask
      bank/                  the trained prompt bank (``PromptBank.save``)
      checkpoints/last.ckpt  the resume checkpoint (backbone left out)
      .hydra/                the composed config and the command-line overrides (Hydra)
      eval/                  ``compt evaluate``'s task × mask tables
      .compt-claim           while a process trains the job: who (host, pid, SLURM job), refreshed as a
                             heartbeat (:mod:`compt.runs.claims`)
      .compt-forced          while a ``force=true`` re-run is in progress (a requeue resumes it)

:class:`RunDir` names these paths and reads and writes them; training, inference, evaluation, the report and
the sweep listing all go through it. :meth:`RunDir.check` says what a launch does with the folder, trusting
nothing: a job is ``done`` only when its results.json passes :data:`RESULTS_SCHEMA` and its ``bank/`` is
whole. :func:`locate_bank` / :func:`load_bank` accept a run folder or a bank folder, wherever a user passes
"a trained run".
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Literal

from omegaconf import DictConfig, OmegaConf
from safetensors import safe_open

from compt.atomic import TEMP_SUFFIX, atomic_file, write_text_atomic
from compt.errors import IncompleteRunError, RunNotFoundError
from compt.prompts.bank import CONFIG_FILE as BANK_CONFIG_FILE
from compt.prompts.bank import WEIGHTS_FILE as BANK_WEIGHTS_FILE
from compt.prompts.bank import PromptBank
from compt.utils import json_safe

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
PREDICTIONS_FILE = "predictions.jsonl"
MASK_PREDICTIONS_FILE = "mask_predictions.jsonl"
BANK_DIR = "bank"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
HYDRA_DIR = ".hydra"
HYDRA_CONFIG = "config.yaml"
HYDRA_OVERRIDES = "overrides.yaml"
EVAL_DIR = "eval"
FORCED_MARKER = ".compt-forced"
CLAIM_FILE = ".compt-claim"
#: how a user points a run elsewhere (named by an error about a folder that cannot be written)
RUN_ELSEWHERE = "hydra.run.dir=DIR, or paths.log_dir=DIR for sweeps"
#: the temporary files of compt's atomic writes (an interrupted write leaves them; removed at relaunch)
TEMP_PATTERNS = (f".{RESULTS_FILE}.*", f"*{TEMP_SUFFIX}")
#: the folders of the loggers of ``conf/logger/`` (W&B, CSV, TensorBoard, MLflow's store): their own files,
#: never compt's temporary files
LOGGER_DIRS = ("wandb", "csv", "tensorboard", "mlruns")
#: ``format_version`` of results.json
FORMAT_VERSION = 1
#: ``status`` of a finished run's results.json
COMPLETE = "complete"
#: ``status`` of a run stopped because its loss or a prompt parameter became NaN/infinite
DIVERGED = "diverged"

JobStatus = Literal["done", "diverged", "resume", "new"]

_NUMBER = (int, float)
_NONE = type(None)
#: keys every complete results.json holds and their JSON types: what the report, ``compt evaluate`` and the
#: skip decision read. A file that lacks one (hand-edited, written by a bug) is not a finished run.
RESULTS_SCHEMA: dict[str, tuple[type, ...]] = {
    "status": (str,),
    "method": (str,),
    "k": (int,),
    "seed": (int,),
    "tasks": (list,),
    "overrides": (list,),
    "primary": (dict,),
    "avg": (*_NUMBER, _NONE),
    "masks": (dict,),
    "config": (dict,),
}
#: keys a complete results.json may lack (files from older versions) but that have these types when present
RESULTS_OPTIONAL: dict[str, tuple[type, ...]] = {
    "format_version": (int,),
    "primary_paper": (dict,),
    "avg_paper": (*_NUMBER, _NONE),
    "metrics": (dict,),
    "counts": (dict,),
    "invalid": (dict,),
    "global_step": (int,),
    "curves": (dict,),
    "router_weights": (dict, _NONE),
    "router_logits": (dict, _NONE),
    "cross_prompts": (dict, _NONE),
}


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
    def mask_predictions_file(self) -> Path:
        return self.path / MASK_PREDICTIONS_FILE

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

    @property
    def claim_file(self) -> Path:
        return self.path / CLAIM_FILE

    @property
    def forced_marker(self) -> Path:
        return self.path / FORCED_MARKER

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
        """What the files claim: ``done`` (results.json says complete), ``resume`` (from
        ``checkpoints/last.ckpt``) or ``new``. :meth:`check` verifies the claim (what a launch does)."""
        if self.is_complete():
            return "done"
        return "resume" if self.last_checkpoint.is_file() else "new"

    def check(self) -> RunCheck:
        """What launching this run again does, verified: ``done`` (results.json passes
        :data:`RESULTS_SCHEMA` and ``bank/`` is whole: skipped), ``diverged`` (skipped unless ``force=true``),
        ``resume`` (from ``checkpoints/last.ckpt``: training continues, or only the test and the files are
        redone) or ``new``; ``problem`` names a damaged results.json or bank the launch will replace."""
        try:
            self.valid_results()
        except IncompleteRunError as err:
            if self.is_diverged():
                return RunCheck("diverged")
            problem = str(err) if self.results_file.exists() else None
        else:
            problem = bank_problem(self.bank_dir)
            if problem is None:
                return RunCheck("done")
        return RunCheck("resume" if self.last_checkpoint.is_file() else "new", problem)

    def is_diverged(self) -> bool:
        """Whether results.json records a diverged run."""
        try:
            results = self.read_results()
        except (OSError, ValueError):
            return False
        return isinstance(results, dict) and results.get("status") == DIVERGED

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

    def valid_results(self) -> dict[str, Any]:
        """The parsed ``results.json`` of a finished run that also passes :data:`RESULTS_SCHEMA`.

        Raises:
            IncompleteRunError: missing, unreadable, not complete, or damaged (the message names the keys).
        """
        results = self.complete_results()
        problems = results_problems(results)
        if problems:
            raise IncompleteRunError(f"{RESULTS_FILE} is damaged: {'; '.join(problems)}")
        return results

    def write_results(self, results: dict[str, Any]) -> Path:
        """Write ``results.json`` atomically (NaN and infinities as ``null``)."""
        return write_json_atomic(self.results_file, results)

    def write_predictions(
        self, rows: list[dict[str, Any]], inputs: dict[str, list[dict]], main_mask: str | None = None
    ) -> Path:
        """``predictions.jsonl``: one JSON line per evaluated example under the main mask, sorted by task and
        example id, with its input and target text from ``inputs`` (``{task: eval rows}``, indexed by example
        id), and its gold ``answers`` (text tasks) and ``choices`` (per-row choices) when the row has them. Rows
        of other masks (their ``mask`` is not ``main_mask``) go to ``mask_predictions.jsonl``, mask by mask in
        the order they come; a row without ``mask`` is the main mask's."""
        main = [r for r in rows if r.get("mask", main_mask) == main_mask]
        others = [r for r in rows if r.get("mask", main_mask) != main_mask]
        main.sort(key=lambda r: (r["task"], r["example_id"]))
        self._write_prediction_lines(self.predictions_file, main, inputs)
        if others:
            order = {mask: i for i, mask in enumerate(dict.fromkeys(r["mask"] for r in others))}
            others.sort(key=lambda r: (order[r["mask"]], r["task"], r["example_id"]))
            self._write_prediction_lines(self.mask_predictions_file, others, inputs)
        else:
            self.mask_predictions_file.unlink(missing_ok=True)  # an earlier test's, under other masks
        return self.predictions_file

    @staticmethod
    def _write_prediction_lines(
        path: Path, rows: list[dict[str, Any]], inputs: dict[str, list[dict]]
    ) -> None:
        with atomic_file(path) as handle:
            for row in rows:
                source = inputs.get(row["task"], [])
                extra = source[row["example_id"]] if row["example_id"] < len(source) else {}
                record = {**row, "input": extra.get("input_text"), "target": extra.get("target_text")}
                record.update({key: extra[key] for key in ("answers", "choices") if key in extra})
                handle.write(json.dumps(json_safe(record)) + "\n")

    def read_predictions(self, main_mask: str | None = None) -> list[dict[str, Any]]:
        """Every stored prediction, main mask first, each with its ``mask``: lines written before masks were
        recorded get ``main_mask`` (default: the first mask of results.json's ``masks``, else ``total``).
        Empty when the run has no ``predictions.jsonl``."""
        if main_mask is None:
            try:
                main_mask = next(iter(self.read_results().get("masks") or {}), None)
            except (OSError, ValueError, AttributeError):
                main_mask = None
        rows = []
        for path in (self.predictions_file, self.mask_predictions_file):
            if path.is_file():
                rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [{**row, "mask": row.get("mask") or main_mask or "total"} for row in rows]

    def temp_files(self) -> list[Path]:
        """Temporary files an interrupted write may have left in the folder and its sub-runs (a partial
        results.json, predictions, checkpoint or bank): :data:`TEMP_PATTERNS`, outside logger folders."""
        found = []
        for root, dirs, files in os.walk(self.path):
            dirs[:] = [d for d in dirs if d not in LOGGER_DIRS]
            found += [Path(root) / f for f in files if any(fnmatch(f, p) for p in TEMP_PATTERNS)]
        return sorted(found)

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


@dataclass(frozen=True)
class RunCheck:
    """What a launch does with a run folder (:meth:`RunDir.check`)."""

    status: JobStatus
    #: a damaged results.json or bank/ that the launch replaces (None: nothing damaged)
    problem: str | None = None

    @property
    def finished(self) -> bool:
        """Whether a launch skips the run: complete (``done``) or ``diverged`` (unless ``force=true``)."""
        return self.status in ("done", DIVERGED)


def finished(run: RunDir) -> bool:
    """Whether the run is finished (complete, or diverged), saying so in the log: a relaunch skips it."""
    check = run.check()
    if check.finished:
        log.info("[compt] %s; skipping (force=true re-runs it).", finished_notice(run, check.status))
    return check.finished


def finished_notice(run: RunDir, status: str) -> str:
    """What a relaunch says about a finished run it skips."""
    if status == DIVERGED:
        step = (run.read_results().get("diverged") or {}).get("step")
        return f"{run.path} diverged (at step {step}, see its {RESULTS_FILE})"
    return f"{run.path} already has a complete {RESULTS_FILE}"


def results_problems(results: Any) -> list[str]:
    """What keeps a parsed results.json from being a finished run's: missing keys, wrong types, a task
    without its primary metric. Empty list: it passes :data:`RESULTS_SCHEMA`."""
    if not isinstance(results, dict):
        return [f"not a JSON object but {type(results).__name__}"]
    missing = [key for key in RESULTS_SCHEMA if key not in results]
    problems = [f"missing {', '.join(map(repr, missing))}"] if missing else []
    for key, types in {**RESULTS_SCHEMA, **RESULTS_OPTIONAL}.items():
        if key in results and not isinstance(results[key], types):
            expected = " or ".join("null" if t is _NONE else t.__name__ for t in types)
            problems.append(f"{key!r} is {type(results[key]).__name__}, expected {expected}")
    if isinstance(results.get("tasks"), list) and isinstance(results.get("primary"), dict):
        absent = [t for t in results["tasks"] if t not in results["primary"]]
        if absent:
            problems.append(f"no primary metric for task(s) {absent}")
    unusable = nonfinite_metrics(results)
    if unusable:
        problems.append(
            f"non-finite metric(s) {', '.join(unusable)} (an evaluation that failed is never averaged: a "
            "relaunch re-tests the job from last.ckpt or trains it again)"
        )
    return problems


#: the readings of a results.json (top level and per mask) that must be finite numbers
READINGS = ("primary", "avg", "primary_paper", "avg_paper")


def nonfinite_metrics(results: dict[str, Any]) -> list[str]:
    """The metrics of a parsed results.json that are not finite numbers (NaN, an infinity, or null: what NaN
    becomes in JSON), as ``key.task=value``: the per-task metrics, the primary readings and averages, and the
    same readings of every mask."""
    found: list[str] = []

    def check(where: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                check(f"{where}.{key}", inner)
        elif isinstance(value, bool) or not isinstance(value, _NUMBER) or not math.isfinite(value):
            found.append(f"{where}={json.dumps(value)}")

    sources = {"": results}
    if isinstance(results.get("masks"), dict):
        sources.update({f"masks.{m}.": r for m, r in results["masks"].items() if isinstance(r, dict)})
    for prefix, source in sources.items():
        for key in ("metrics", *READINGS) if not prefix else READINGS:
            if key in source:
                check(prefix + key, source[key])
    return found


def bank_problem(bank_dir: Path) -> str | None:
    """Why the bank in ``bank_dir`` cannot be loaded (None: it is whole), without reading its weights:
    ``prompt_bank.json`` parses, and ``prompt_bank.safetensors``' header parses and matches the file's size
    (a truncated, empty or overwritten file fails)."""
    config, weights = bank_dir / BANK_CONFIG_FILE, bank_dir / BANK_WEIGHTS_FILE
    if not bank_dir.is_dir():
        return f"no {BANK_DIR}/ folder"
    try:
        meta = json.loads(config.read_text())
        if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
            return f"{config} holds no bank config"
        with safe_open(str(weights), framework="pt") as handle:
            handle.keys()
    except FileNotFoundError as err:
        return f"{BANK_DIR}/ is incomplete: no {Path(err.filename or str(err)).name}"
    except Exception as err:  # json, safetensors (truncated, not a safetensors file), OS errors
        return f"{BANK_DIR}/ is damaged ({type(err).__name__}: {err})"
    return None


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write JSON whole or not at all (:func:`compt.atomic.write_text_atomic`: a temporary sibling renamed
    into place). NaN and infinities are written as ``null``; the file gets the user's umask."""
    return write_text_atomic(path, json.dumps(json_safe(data), indent=2) + "\n")


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
