"""Predictions from a trained run: the library behind ``compt predict``.

    from compt.inference import load_for_inference
    predictor = load_for_inference("multirun/demo/k=8,method=ssum,seed=1")
    predictor.predict([{"sentence1": "A man sleeps.", "sentence2": "A man rests."}], task="rte")
    predictor.predict([{"task": "rte", "sentence1": "...", "sentence2": "..."}, {"task": "sst2", "sentence": "..."}])

Rows use the task's hub columns (``TaskSpec.input_columns``, e.g. sentence1/sentence2 for rte), plus a ``task``
column when rows of several tasks are predicted together (they share batches: one backbone pass each, every
row with its task's prompt, as in training); they are formatted with the task's template, tokenised like training
data, and predicted with compt's own :class:`compt.evaluation.Predictor` (rank classification or greedy
generation) under an optional mask.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm
from transformers import PreTrainedTokenizerBase

from compt.atomic import atomic_file, output_error, require_writable, write_problem
from compt.config.run_config import RunConfig
from compt.data.config import DataConfig
from compt.data.encode import Collator
from compt.errors import InferenceError, RunNotFoundError, TaskError
from compt.evaluation.config import EVAL_MODES, EvalConfig
from compt.evaluation.predict import Predictor
from compt.inference.rows import (  # noqa: F401 (read_rows: API)
    TASK_COLUMN,
    check_input,
    check_rows,
    read_rows,
    row_chunks,
)
from compt.models.backbone import load_backbone, weights_dtype
from compt.models.family import build_model
from compt.models.seq2seq import ComptModel
from compt.models.tokenization import encode_inputs, encode_targets, input_encoder
from compt.prompts.bank import CONFIG_FILE, PromptBank
from compt.runs import BankLocation, RunDir, locate_bank
from compt.tasks import TaskSpec, get_task
from compt.utils import finite_or_none

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


def bank_tasks(task_names: Sequence[str], config: RunConfig | None) -> list[TaskSpec]:
    """The bank's tasks (``task_names``, in task-id order): the run's task definitions when known (user tasks,
    overrides, the text protocol), else the built-in ones."""
    defined = {t.name: t for t in config.tasks} if config else {}
    try:
        return [defined.get(name) or get_task(name) for name in task_names]
    except TaskError as err:
        raise InferenceError(f"cannot rebuild the bank's tasks: {err}") from err


def find_task(tasks: Sequence[TaskSpec], task: str) -> TaskSpec:
    """``task`` among a bank's tasks; :class:`InferenceError` listing them otherwise."""
    for spec in tasks:
        if spec.name == task:
            return spec
    raise InferenceError(
        f"this bank was not trained on task {task!r}; its tasks are: {', '.join(t.name for t in tasks)}"
    )


@dataclass(frozen=True)
class Recorded:
    """What a run (or bank) folder records for prediction, read without loading the backbone or the weights."""

    files: BankLocation
    config: RunConfig | None
    """the run's objects (None for a bank folder outside a run)"""
    backbone: str | None
    """the backbone the bank was trained on (name or directory)"""
    tasks: list[TaskSpec]
    """the bank's tasks in task-id order"""


def recorded(path: str | Path) -> Recorded:
    """Read a run's (or bank folder's) records: its config, the bank's backbone and tasks (milliseconds)."""
    files = locate_bank(path)
    config = run_config(files.run_dir)
    try:
        meta = json.loads((files.bank_dir / CONFIG_FILE).read_text())["config"]
        names = list(meta["task_names"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InferenceError(
            f"the prompt bank in {files.bank_dir} is damaged ({type(err).__name__}: {err}); relaunching the "
            "run's training command rebuilds it from checkpoints/last.ckpt when that exists"
        ) from err
    return Recorded(files, config, meta.get("backbone"), bank_tasks(names, config))


@dataclass(frozen=True)
class PreparedRow:
    """A row ready for the model (:meth:`RowEncoder.prepare`)."""

    task: TaskSpec
    task_id: int
    """the task's index in the bank (which prompt, candidates and answer parsing the row gets)"""
    text: str
    """the formatted input text"""
    input_ids: list[int]
    """token ids, truncated to the task's input limit as in training (:meth:`RowEncoder.limit`)"""
    length: int
    """the number of tokens before truncation"""
    answer: dict[str, Any]
    """what the row carries of its gold answer (``gold``, ``answers``: :func:`gold_fields`; empty without)"""
    choices: list[str] | None = None
    """the row's own answer choices (a task with per-row choices: copa, record), else None"""
    choice_ids: list[list[int]] | None = None
    """``choices`` tokenised as targets"""

    def example(self) -> dict[str, Any]:
        """The row as the :class:`~compt.data.encode.Collator` takes it."""
        example: dict[str, Any] = {"input_ids": self.input_ids, "labels": [], "task_id": self.task_id}
        if self.choices is not None:
            example |= {"choices": self.choices, "choice_ids": self.choice_ids}
        return example


class RowEncoder:
    """The text side of prediction: rows formatted with their task's template and tokenised as training data
    is (truncated to the task's input limit, :meth:`limit`), with their own answer choices where the task has
    them. It holds no model, so a server can prepare the rows of a request (with its own copy of the
    tokenizer) while the model answers others."""

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, tasks: Sequence[TaskSpec], max_source_length: int
    ) -> None:
        self.tokenizer = tokenizer
        self.tasks = list(tasks)
        self.max_source_length = max_source_length
        self._encode = input_encoder(tokenizer)

    def limit(self, task: TaskSpec) -> int:
        """The input limit of ``task``'s rows in tokens: its own ``max_source_length``, else the run's."""
        return task.max_source_length or self.max_source_length

    def prepare(self, rows: Sequence[Mapping[str, Any]], tasks: Sequence[str]) -> list[PreparedRow]:
        """Format and tokenise ``rows``, each under its task in ``tasks`` (one text at a time:
        :func:`~compt.models.tokenization.input_encoder`). The rows must hold their task's input columns and choices
        (checked first: :class:`~compt.inference.rows.RowCheck`)."""
        specs = [find_task(self.tasks, name) for name in tasks]
        limits = [self.limit(spec) for spec in specs]
        texts = [spec.format_input(row) for spec, row in zip(specs, rows)]
        ids = [self._encode(text) for text in texts]
        lengths = [len(seq) for seq in ids]
        for limit in set(limits):  # cut as training cuts (a seq2seq input keeps its </s>)
            longer = [i for i, n in enumerate(lengths) if n > limit and limits[i] == limit]
            if longer:
                cut = encode_inputs(self.tokenizer, [texts[i] for i in longer], limit)
                for i, seq in zip(longer, cut):
                    ids[i] = seq
        prepared = []
        for spec, row, text, seq, length in zip(specs, rows, texts, ids, lengths):
            choices = spec.row_choices(row) if spec.choices else None
            prepared.append(
                PreparedRow(
                    spec,
                    self.tasks.index(spec),
                    text,
                    seq,
                    length,
                    gold_fields(spec, row),
                    choices,
                    encode_targets(self.tokenizer, choices) if choices is not None else None,
                )
            )
        return prepared


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
        self.encoder = RowEncoder(tokenizer, self.tasks, max_source_length)
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
        return self.tasks.index(find_task(self.tasks, task))

    def load_modes(self, modes: Iterable[str] = EVAL_MODES) -> None:
        """Tokenise every task's candidates for each of ``modes`` now rather than on first use (a server does
        it at start: afterwards answering rows uses the tokenizer only to decode)."""
        for mode in modes:
            self._predictor(mode)

    def _predictor(self, mode: str) -> Predictor:
        if mode not in EVAL_MODES:
            raise InferenceError(f"mode={mode!r}; choose one of {', '.join(EVAL_MODES)}")
        if mode not in self._predictors:
            predictor = Predictor(
                self.tasks, self.tokenizer, mode, self.max_new_tokens, self.repetition_penalty
            )
            self._predictors[mode] = predictor.to(self.device)
        return self._predictors[mode]

    def predict(
        self,
        rows: Iterable[Mapping[str, Any]],
        task: str | None = None,
        mode: str | None = None,
        mask: str = "total",
        batch_size: int = 64,
        origin: str = "the input rows",
    ) -> list[dict[str, Any]]:
        """Predict ``rows`` (dicts with their task's input columns), each under ``task`` or, without it, under
        its own ``task`` column; rows of different tasks share batches.

        Returns one dict per row, in order: ``index``, ``task``, ``input`` (formatted text), ``prediction``
        (text), ``value`` (class id, choice index or score; None when the generated text is not a valid answer;
        None for a task scored as text), ``valid``; ``generated`` when a generated text named none of the row's
        choices (``prediction`` is then the choice rank classification picks); ``gold`` when the row carries a
        valid label and ``answers`` (its gold answer texts) for a task with per-row choices or text answers.

        Raises:
            InferenceError: a row's task is missing or not the bank's, it has no text in an input column
                (missing, null, a list or dict: nothing is predicted, rather than the text "None") or, for a
                task with per-row choices, no choices; ``origin`` names the rows in the message. Blank text is
                predicted, with a warning.
        """
        rows = list(rows)
        if task is not None:
            find_task(self.tasks, task)
        check_rows(self.tasks, rows, origin, task)
        return list(self.predict_chunks([rows], task, mode, mask, batch_size))

    @torch.no_grad()
    def predict_chunks(
        self,
        chunks: Iterable[Sequence[Mapping[str, Any]]],
        task: str | None = None,
        mode: str | None = None,
        mask: str = "total",
        batch_size: int = 64,
    ) -> Iterator[dict[str, Any]]:
        """Predict rows that arrive in chunks (e.g. :func:`compt.inference.rows.row_chunks`), yielding each
        row's prediction (as :meth:`predict`; ``index`` counts from the first row of the first chunk) as soon
        as its batch is done: memory stays flat in the number of rows. Each row is answered under ``task``, or
        its own ``task`` column; a batch holds ``batch_size`` consecutive rows whatever their tasks (one
        backbone pass). The rows are not checked here (:func:`~compt.inference.rows.check_input` reads them
        once first)."""
        index = 0
        for chunk in chunks:
            for start in range(0, len(chunk), batch_size):
                rows = chunk[start : start + batch_size]
                names = [task or row[TASK_COLUMN] for row in rows]
                for record in self.predict_prepared(self.encoder.prepare(rows, names), mode, mask):
                    yield {"index": index, **record}
                    index += 1

    @torch.no_grad()
    def predict_prepared(
        self, rows: Sequence[PreparedRow], mode: str | None = None, mask: str = "total"
    ) -> list[dict[str, Any]]:
        """One backbone pass over ``rows`` of any of the bank's tasks (each row gets its task's prompt,
        candidates and answer parsing): one record per row as :meth:`predict`'s, without ``index``."""
        predictor = self._predictor(mode or self.mode)
        collated = self.collator([row.example() for row in rows])
        batch = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in collated.items()}
        predictions = predictor(self.model, batch, mask)
        generated = predictions.generated or [None] * len(rows)
        records = []
        for row, prediction, value, valid, text in zip(
            rows, predictions.texts, predictions.values.tolist(), predictions.valid.tolist(), generated
        ):
            record = {
                "task": row.task.name,
                "input": row.text,
                "prediction": prediction,
                "value": finite_or_none(value),
                "valid": bool(valid),
            }
            if text is not None:
                record["generated"] = text
            records.append(record | row.answer)
        return records


def gold_fields(task: TaskSpec, row: Mapping[str, Any]) -> dict[str, Any]:
    """What a row carries of its gold answer: ``gold`` (class id, choice index or score) and, for a task with
    per-row choices or text answers, ``answers`` (every gold answer text); nothing for a row without a valid
    one."""
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
    record = recorded(path)
    config = record.config
    name = backbone or record.backbone
    if not name:
        raise InferenceError(
            f"the bank in {record.files.bank_dir} records no backbone; pass one (--backbone NAME)"
        )
    model, tokenizer = load_backbone(name, weights_dtype(config.run.backbone_dtype) if config else None)
    bank = PromptBank.load(record.files.bank_dir, d_model=model.get_input_embeddings().embedding_dim)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    compt_model = build_model(model, bank, backbone_dropout=False).to(device)
    evaluation = config.evaluation if config else BANK_ONLY
    max_source_length = config.data.max_source_length if config else DataConfig.max_source_length
    return PromptPredictor(compt_model, tokenizer, record.tasks, evaluation, max_source_length)


def predict_file(
    bank: str | Path,
    task: str | None,
    source: str | Path,
    output: str | Path | None = None,
    mode: str | None = None,
    mask: str = "total",
    batch_size: int = 64,
    backbone: str | None = None,
    device: str | None = None,
) -> tuple[int, int]:
    """``compt predict``: predict every row of the file ``source`` with the run (or bank) ``bank`` — each under
    ``task``, or without it under its own ``task`` column (rows of different tasks share batches) — and write
    JSON lines in the input's order to ``output`` (whole or not at all: a temporary sibling renamed at the end) or to stdout (each
    line as soon as its batch is done), with a progress bar on stderr; memory stays flat in the number of
    rows. What can be refused is refused before the backbone loads: the task, the rows (read once,
    :func:`~compt.inference.rows.check_input`) and an output folder that cannot be written.

    Returns:
        ``(rows, valid predictions)``.
    Raises:
        InferenceError: the task or the rows (one line naming them).
        OutputWriteError: the output cannot be written (a full disk, a read-only folder, no permission).
    """
    tasks = recorded(bank).tasks
    if task is not None:
        find_task(tasks, task)
    count = check_input(source, tasks, task)
    if output is not None:
        require_writable(Path(output).parent, "write the predictions elsewhere (--output FILE)")
    predictor = load_for_inference(bank, backbone=backbone, device=device)
    records = predictor.predict_chunks(row_chunks(source), task, mode, mask, batch_size)
    desc = f"predict {task or 'rows'}"
    progress = tqdm(records, total=count, desc=desc, unit="row", file=sys.stderr, disable=None)
    valid = 0
    if output is None:
        try:
            for record in progress:
                sys.stdout.write(json.dumps(record) + "\n")
                valid += record["valid"]
            sys.stdout.flush()
        except BrokenPipeError:  # `compt predict ... | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError as err:  # stdout redirected to a full disk
            if write_problem(err) is None:
                raise
            raise output_error("the standard output", err, "--output FILE") from err
        return count, valid
    with atomic_file(output, elsewhere="--output FILE") as handle:
        for record in progress:
            handle.write(json.dumps(record) + "\n")
            valid += record["valid"]
    return count, valid
