"""Predictions from a trained run: the library behind ``compt predict``.

    from compt.inference import load_for_inference
    predictor = load_for_inference("multirun/demo/k=8,method=ssum,seed=1")
    predictor.predict([{"sentence1": "A man sleeps.", "sentence2": "A man rests."}], task="rte")

Rows use the task's hub columns (``TaskSpec.input_columns``, e.g. sentence1/sentence2 for rte); they are
formatted with the task's template, tokenised like training data, and predicted with compt's own
:class:`compt.evaluation.Predictor` (rank classification or greedy generation) under an optional mask.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from compt.backbone import load_backbone, weights_dtype
from compt.data.config import DataConfig
from compt.data.encode import Collator
from compt.data.sources import LOCAL_FORMATS, load_local_file
from compt.data.validate import row_text_problems
from compt.errors import DataError, InferenceError, RunNotFoundError, TaskError
from compt.evaluation.config import EVAL_MODES, EvalConfig
from compt.evaluation.predict import Predictor
from compt.family import build_model
from compt.model import ComptModel
from compt.prompts.bank import CONFIG_FILE, PromptBank
from compt.runs import RunDir, locate_bank
from compt.tasks import TaskSpec, get_task
from compt.tokenization import encode_inputs, encode_targets
from compt.training.config import RunConfig
from compt.utils import finite_or_none

log = logging.getLogger(__name__)

BANK_ONLY = EvalConfig(mode="rank")
"""Predictions from a bank folder without its run's config: rank classification (never an invalid answer)."""


def run_config(run_dir: Path | None) -> RunConfig | None:
    """The objects of the run around a bank (None when there is no run folder or no recorded config)."""
    if run_dir is None:
        return None
    try:
        return RunConfig.from_hydra(RunDir(run_dir).config())
    except RunNotFoundError:
        return None


def bank_tasks(bank: PromptBank, config: RunConfig | None) -> list[TaskSpec]:
    """The bank's tasks in task-id order: the run's task definitions when known (user tasks, overrides, the text
    protocol), else the built-in ones."""
    defined = {t.name: t for t in config.tasks} if config else {}
    try:
        return [defined.get(name) or get_task(name) for name in bank.task_names]
    except TaskError as err:
        raise InferenceError(f"cannot rebuild the bank's tasks: {err}") from err


class PromptPredictor:
    """A trained prompt bank on its frozen backbone, ready to predict rows of any of its tasks.

    Args:
        model: backbone + bank (:class:`ComptModel` or its causal counterpart).
        tokenizer: the backbone's tokenizer.
        tasks: the bank's tasks in task-id order.
        evaluation: the default prediction mode (``rank`` or ``generate``) and the generation length.
        max_source_length: input truncation in tokens (as in training).
    """

    def __init__(
        self,
        model: ComptModel,
        tokenizer: PreTrainedTokenizerBase,
        tasks: Sequence[TaskSpec],
        evaluation: EvalConfig,
        max_source_length: int,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.tasks = list(tasks)
        self.mode = evaluation.mode
        self.max_source_length = max_source_length
        self.max_new_tokens = evaluation.max_new_tokens
        self.repetition_penalty = evaluation.repetition_penalty
        pad = tokenizer.pad_token_id
        self.collator = Collator(pad if pad is not None else 0)
        self._predictors: dict[str, Predictor] = {}

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    @property
    def device(self) -> torch.device:
        return next(self.model.bank.parameters()).device

    def task_id(self, task: str) -> int:
        """Index of ``task`` in the bank; :class:`InferenceError` listing the bank's tasks otherwise."""
        if task not in self.task_names:
            raise InferenceError(
                f"this bank was not trained on task {task!r}; its tasks are: {', '.join(self.task_names)}"
            )
        return self.task_names.index(task)

    def _predictor(self, mode: str) -> Predictor:
        if mode not in EVAL_MODES:
            raise InferenceError(f"mode={mode!r}; choose one of {', '.join(EVAL_MODES)}")
        if mode not in self._predictors:
            predictor = Predictor(
                self.tasks, self.tokenizer, mode, self.max_new_tokens, self.repetition_penalty
            )
            self._predictors[mode] = predictor.to(self.device)
        return self._predictors[mode]

    @torch.no_grad()
    def predict(
        self,
        rows: Iterable[Mapping[str, Any]],
        task: str,
        mode: str | None = None,
        mask: str = "total",
        batch_size: int = 64,
        origin: str = "the input rows",
    ) -> list[dict[str, Any]]:
        """Predict ``rows`` (dicts with the task's input columns) of ``task``.

        Returns one dict per row: ``index``, ``task``, ``input`` (formatted text), ``prediction`` (text),
        ``value`` (class id or score; None when the generated text is not a valid answer), ``valid``, and
        ``gold`` when the row carries a valid label.

        Raises:
            InferenceError: a row has no text in an input column (missing, null, a list or dict: nothing is
                predicted, rather than the text "None"); ``origin`` names the rows in the message. Blank
                text is predicted, with a warning.
        """
        spec = self.tasks[self.task_id(task)]
        predictor = self._predictor(mode or self.mode)
        rows = list(rows)
        check_rows(spec, rows, origin)
        texts = [spec.format_input(row) for row in rows]
        out: list[dict[str, Any]] = []
        for start in range(0, len(rows), batch_size):
            chunk = texts[start : start + batch_size]
            ids = encode_inputs(self.tokenizer, chunk, spec.max_source_length or self.max_source_length)
            examples = [{"input_ids": x, "labels": [], "task_id": self.task_id(task)} for x in ids]
            if spec.choices:  # the rows' own choices (checked present by check_rows)
                choices = [spec.row_choices(r) for r in rows[start : start + batch_size]]
                for example, options in zip(examples, choices):
                    example.update(choices=options, choice_ids=encode_targets(self.tokenizer, options))
            batch = {
                k: v.to(self.device) if torch.is_tensor(v) else v for k, v in self.collator(examples).items()
            }
            predictions = predictor(self.model, batch, mask)
            for offset, (text, value) in enumerate(zip(predictions.texts, predictions.values.tolist())):
                index = start + offset
                record = {
                    "index": index,
                    "task": task,
                    "input": chunk[offset],
                    "prediction": text,
                    "value": finite_or_none(value),
                    "valid": bool(predictions.valid[offset]),
                }
                if predictions.generated and predictions.generated[offset] is not None:
                    record["generated"] = predictions.generated[offset]
                record.update(_gold(spec, rows[index]))
                out.append(record)
        return out


def check_rows(task: TaskSpec, rows: list[Mapping[str, Any]], origin: str) -> None:
    """Refuse rows without text in an input column of ``task`` (one line naming them); warn about blank
    text."""
    problems, warnings = row_text_problems(task, rows)
    no_choices = [i for i, row in enumerate(rows) if task.choices and not _has_choices(task, row)]
    if no_choices:
        shown = ", ".join(map(str, no_choices[:5])) + (", ..." if len(no_choices) > 5 else "")
        problems.append(f"no answer choices (column(s) {list(task.choices or ())}) in row(s) {shown}")
    if problems:
        raise InferenceError(
            f"{origin}: {'; '.join(problems)}; task {task.name!r} reads {list(task.input_columns)}. "
            "Fix or drop these rows: nothing was predicted"
        )
    for warning in warnings:
        log.warning("compt: warning: %s: %s", origin, warning)


def _has_choices(task: TaskSpec, row: Mapping[str, Any]) -> bool:
    try:
        return bool(task.row_choices(row))
    except (TaskError, KeyError, TypeError):
        return False


def _gold(task: TaskSpec, row: Mapping[str, Any]) -> dict[str, Any]:
    """What a row carries of its gold answer: ``gold`` (class id, choice index or score) and, for a text task,
    ``answers`` (every gold answer text); nothing for a row without a valid one."""
    try:
        if task.kind == "text":
            return {"answers": task.gold_answers(row)}
        if task.kind == "choice":
            return {"gold": task.gold(row), "answers": task.gold_answers(row)}
        return {"gold": task.gold(row)}
    except (TaskError, KeyError, TypeError, ValueError, IndexError):
        return {}


def load_for_inference(
    path: str | Path, backbone: str | None = None, device: str | torch.device | None = None
) -> PromptPredictor:
    """Load a run's (or a bank folder's) prompt bank on the backbone named in its config.

    Args:
        path: the run folder (``RUN_DIR/bank`` is used) or the bank folder.
        backbone: load this backbone instead (name or directory), e.g. when the recorded path moved.
        device: ``cpu``, ``cuda``...; default CUDA when available.
    """
    files = locate_bank(path)
    config = run_config(files.run_dir)
    meta = json.loads((files.bank_dir / CONFIG_FILE).read_text())
    name = backbone or meta["config"].get("backbone")
    if not name:
        raise InferenceError(f"the bank in {files.bank_dir} records no backbone; pass one (--backbone NAME)")
    model, tokenizer = load_backbone(name, weights_dtype(config.run.backbone_dtype) if config else None)
    bank = PromptBank.load(files.bank_dir, d_model=model.get_input_embeddings().embedding_dim)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    compt_model = build_model(model, bank, backbone_dropout=False).to(device)
    evaluation = config.evaluation if config else BANK_ONLY
    max_source_length = config.data.max_source_length if config else DataConfig.max_source_length
    return PromptPredictor(compt_model, tokenizer, bank_tasks(bank, config), evaluation, max_source_length)


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``.jsonl``/``.json``/``.csv``/``.parquet`` file (the hub's column names)."""
    path = Path(path)
    if not path.is_file():
        raise InferenceError(f"input file {path} does not exist")
    if path.suffix not in LOCAL_FORMATS:
        raise InferenceError(f"input {path}: use one of {', '.join(LOCAL_FORMATS)}")
    try:
        rows = load_local_file(path).to_list()
    except DataError as err:
        raise InferenceError(str(err)) from err
    except UnicodeDecodeError as err:  # Arrow reads invalid UTF-8; Python does not
        raise InferenceError(f"input {path} is not valid UTF-8 ({err}); re-encode it as UTF-8") from err
    if not rows:
        raise InferenceError(f"input file {path} holds no rows")
    return rows
