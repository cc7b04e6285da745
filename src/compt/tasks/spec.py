"""``TaskSpec``: one task described as data (where its rows live, how a row becomes text, how text is read back).

A task is never a code branch: every built-in task is a YAML entry (``builtin.yaml``) loaded into this class,
and a user task is the same YAML written in ``conf/tasks/<name>.yaml``.
"""

from __future__ import annotations

import math
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

import numpy as np

from compt.errors import TaskError
from compt.fields import knob, unknown_keys
from compt.tasks.preprocess import REWRITES

#: metric names a task may list (computed by ``compt.evaluation``)
KNOWN_METRICS = ("accuracy", "matthews", "f1", "f1a", "em", "pearson", "spearman")
#: the task kinds (:attr:`TaskSpec.kind`) and the metrics each may list: ``f1`` is binary (macro for more classes)
#: F1 for classification and SQuAD's token F1 for text; ``em`` is question-level exact match over the rows of a
#: group for classification (MultiRC) and SQuAD's exact match for text; ``f1a`` is F1 over all answers (MultiRC)
KIND_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "matthews", "f1", "f1a", "em"),
    "regression": ("pearson", "spearman"),
    "choice": ("accuracy",),
    "text": ("f1", "em"),
}
#: a kind's metrics when a task lists none
DEFAULT_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy",),
    "regression": ("pearson", "spearman"),
    "choice": ("accuracy",),
    "text": ("f1", "em"),
}
#: ``truncation``: the tokenizer's ``max_source_length`` (tokens) | the authors' character cut (``chars_compat``)
TRUNCATIONS = ("tokens", "chars_compat")
#: ``regression_targets``: rounded to ``regression_grid`` | ``np.round(score, 1)``, gold rounded too (authors)
REGRESSION_TARGETS = ("grid", "round1_compat")
#: ``answer_parsing``: the whole answer must be a label | the first word is read, unparsable scores -1 (authors)
ANSWER_PARSINGS = ("exact", "first_word_compat")
#: ``input_format``: ``template`` (``<task>: field: ...``) | ``authors_template`` (``src-<task>: field: ...``)
INPUT_FORMATS = ("paper", "authors_compat")
AUTHORS_PREFIX = "src-"
"""The authors' code started every input with ``src-<task>:`` (``add_prefix``; ``attempt/data/tasks.py`` c7a19a2
L639, L659–666)."""
AUTHORS_MAX_CHARS = 511
"""The authors' code cuts an input to ``511 − len(target) − 50`` characters (docs/method.md §8, input truncation)."""
AUTHORS_PROMPT_RESERVE = 50
AUTHORS_INVALID_SCORE = -1.0
"""The authors' ``string_to_float``: an unparsable regression answer is scored as −1."""


@dataclass(frozen=True)
class TaskSpec:
    """One task: data source, text format, label words and metrics."""

    name: str
    """short task name used in configs, logs and as the ``{task}`` prefix of the input text, e.g. ``"rte"``"""
    template: str
    """text template filled with the row's columns,
    e.g. ``"rte: sentence1: {sentence1} sentence2: {sentence2}"``"""
    hub_path: str | None = None
    """hub dataset id for ``datasets.load_dataset``, e.g. ``"nyu-mll/glue"`` (None: local files only)"""
    hub_name: str | None = None
    """hub configuration name, e.g. ``"rte"`` (None: the dataset has no configurations)"""
    train_split: str = "train"
    """split the k-shot training set is drawn from"""
    eval_split: str = "validation"
    """split used as the test set (GLUE: validation, since GLUE test labels are hidden)"""
    label_column: str = "label"
    """column holding the gold label (class id, label string or regression score)"""
    label_words: tuple[str, ...] | None = None
    """target word of every class, index = class id; None for a regression task"""
    label_values: Mapping[str, int] | None = field(default=None, hash=False)
    """label string -> class id, for datasets whose label column holds strings (scitail tsv_format);
    None: ids"""
    regression_grid: float | None = None
    """regression only: targets are rounded to this grid and written as text, e.g. 0.2 -> ``"3.8"``"""
    regression_range: tuple[float, float] = (0.0, 5.0)
    """regression only: (low, high) range of valid scores"""
    metrics: tuple[str, ...] | None = None
    """metric names from KNOWN_METRICS; the first one is the task's primary metric. None = the kind's default:
    accuracy (classification, choice), pearson + spearman (regression), f1 + em (text)"""
    compat_metric: str | None = None
    """the paper's reading (the authors' code): accuracy for classification, spearman for regression by default;
    every evaluation reports it beside ``metrics`` (``primary_paper``), ``metrics.compat`` makes it primary"""
    data_dir: str | None = None
    """optional folder holding this task's ``<split>.{parquet,jsonl,csv}``; when set, always read from it"""
    truncation: str = knob("data.truncation", "tokens")
    """input cut: ``tokens`` (``data.max_source_length``) | ``chars_compat`` (the authors' character cut)"""
    char_limits: Mapping[str, int] | None = field(default=None, hash=False)
    """``chars_compat`` only: characters kept of each column before formatting,
    e.g. qnli ``{question: 100}``"""
    regression_targets: str = knob("data.regression_targets", "grid")
    """regression targets: ``grid`` (``regression_grid``) | ``round1_compat`` (``np.round(score, 1)``,
    gold too)"""
    answer_parsing: str = knob("eval.answer_parsing", "exact")
    """reading an answer: ``exact`` | ``first_word_compat`` (first word; unparsable regression scores −1)"""
    input_format: str = knob("data.input_format", "paper")
    """the input text: ``paper`` (``template``) | ``authors_compat`` (``authors_template``, as the authors' code
    wrote it)"""
    authors_template: str | None = None
    """the input as the authors' code wrote it (``input_format="authors_compat"``), with the same columns as
    ``template``, e.g. qnli ``"src-qnli: sentence1: {question} sentence2: {sentence}"``; None = ``template`` with
    its ``"<task>: "`` written ``"src-<task>: "``"""
    choices: tuple[str, ...] | None = None
    """per-row answer choices: the columns holding them (copa ``[choice1, choice2]``: the label column is the
    index of the right one) or one column holding a list (record ``[entities]``); rank classification scores
    exactly the row's choices, a generated answer is read as the choice it matches (else invalid)"""
    answers_column: str | None = None
    """tasks scored as text (exact match and F1 with SQuAD's normalisation, max over the gold answers): the
    column of gold answers — a list of strings (MRQA, record), one string, or SQuAD's ``{text: [...],
    answer_start: [...]}``; the first one is the training target"""
    context_column: str | None = None
    """extractive QA: the column the answers are spans of (``compt data check`` warns about an answer that is
    not in it)"""
    group_columns: tuple[str, ...] | None = None
    """columns (``a.b`` reads a nested field) whose values group rows into questions, for the question-level
    ``em`` metric (multirc ``[idx.paragraph, idx.question]``); the evaluation subset keeps groups whole"""
    preprocess: str | None = None
    """a named row rewrite applied before the template (:data:`compt.tasks.preprocess.REWRITES`:
    ``record_highlights``, ``multirc_markup``, ``wsc_spans``)"""
    row_filter: Mapping[str, Any] | None = field(default=None, hash=False)
    """keep only the rows whose columns have these values, e.g. MRQA's ``{subset: NewsQA}`` (hub and local
    data alike; ``compt data snapshot`` writes the kept rows)"""
    max_source_length: int | None = None
    """this task's input limit in tokens; None = ``data.max_source_length``"""
    max_target_length: int | None = None
    """this task's training-target limit in tokens; None = ``data.max_target_length``"""
    max_new_tokens: int | None = None
    """tokens generated per answer of this task; None = ``eval.max_new_tokens``"""

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731  (frozen dataclass normalisation)
        if self.label_words is not None:
            set_("label_words", tuple(str(w) for w in self.label_words))
        if self.label_values is not None:
            set_(
                "label_values", MappingProxyType({str(k): int(v) for k, v in dict(self.label_values).items()})
            )
        set_("metrics", tuple(self.metrics if self.metrics is not None else DEFAULT_METRICS[self.kind]))
        set_("regression_range", tuple(float(x) for x in self.regression_range))
        if self.char_limits is not None:
            set_("char_limits", MappingProxyType({str(k): int(v) for k, v in dict(self.char_limits).items()}))
        for key in ("choices", "group_columns"):
            value = getattr(self, key)
            if value is not None:
                set_(key, (str(value),) if isinstance(value, str) else tuple(str(v) for v in value))
        if self.row_filter is not None:
            set_("row_filter", MappingProxyType(dict(as_plain(self.row_filter))))
        if self.compat_metric is None:
            set_("compat_metric", {"regression": "spearman", "text": "f1"}.get(self.kind, "accuracy"))
        self._validate()

    def _validate(self) -> None:
        where = f"task {self.name!r}"
        if not self.name or not isinstance(self.name, str):
            raise TaskError("a task needs a non-empty string `name`")
        answer_kinds = [self.label_words is not None, self.regression_grid is not None]
        answer_kinds.append(self.choices is not None or self.answers_column is not None)
        if sum(answer_kinds) != 1:
            raise TaskError(
                f"{where}: set exactly one of `label_words` (classification), `regression_grid` (regression), "
                "or `choices` / `answers_column` (per-row choices, answers scored as text)"
            )
        if self.label_words is not None and len(self.label_words) < 2:
            raise TaskError(f"{where}: `label_words` needs at least two words")
        if self.label_words is not None and len(set(self.label_words)) != len(self.label_words):
            raise TaskError(f"{where}: `label_words` must be distinct, got {list(self.label_words)}")
        if self.regression_grid is not None and self.regression_grid <= 0:
            raise TaskError(f"{where}: `regression_grid` must be > 0, got {self.regression_grid}")
        if self.label_values is not None:
            n = len(self.label_words or ())
            bad = {k: v for k, v in self.label_values.items() if not 0 <= v < n}
            if bad:
                raise TaskError(f"{where}: `label_values` maps to class ids outside 0..{n - 1}: {bad}")
        if not self.metrics:
            raise TaskError(f"{where}: `metrics` must list at least one metric")
        for key, names in (("metrics", self.metrics), ("compat_metric", (self.compat_metric,))):
            unknown = [m for m in names if m not in KNOWN_METRICS]
            if unknown:
                raise TaskError(f"{where}: unknown `{key}` {unknown}; known: {list(KNOWN_METRICS)}")
            allowed = KIND_METRICS[self.kind]
            wrong = [m for m in names if m not in allowed]
            if wrong:
                raise TaskError(
                    f"{where}: `{key}` {wrong} do not fit a {self.kind} task; use {list(allowed)}"
                )
        self._validate_answers(where)
        if not self.input_columns:
            raise TaskError(f"{where}: `template` {self.template!r} names no column (use {{column}} fields)")
        if self.authors_template is not None and set(_columns(self.authors_template)) != set(
            self.input_columns
        ):
            raise TaskError(
                f"{where}: `authors_template` {self.authors_template!r} must name the columns of `template` "
                f"{list(self.input_columns)}"
            )
        if self.hub_path is None and self.data_dir is None:
            raise TaskError(f"{where}: set `hub_path` (hub dataset) or `data_dir` (local files)")
        for key, allowed in (
            ("truncation", TRUNCATIONS),
            ("regression_targets", REGRESSION_TARGETS),
            ("answer_parsing", ANSWER_PARSINGS),
            ("input_format", INPUT_FORMATS),
        ):
            if getattr(self, key) not in allowed:
                raise TaskError(f"{where}: `{key}` {getattr(self, key)!r} is not one of {', '.join(allowed)}")

    def _validate_answers(self, where: str) -> None:
        """The per-row choices, text answers, groups and limits."""
        em = self.kind == "classification" and "em" in {*self.metrics, self.compat_metric}
        if em and not self.group_columns:
            raise TaskError(f"{where}: metric `em` (question-level) needs `group_columns`")
        if "f1a" in self.metrics and self.num_labels != 2:
            raise TaskError(f"{where}: metric `f1a` (F1 over all answers) needs two labels (false, true)")
        if self.preprocess is not None and self.preprocess not in REWRITES:
            raise TaskError(f"{where}: `preprocess` {self.preprocess!r} is not one of {', '.join(REWRITES)}")
        for key in ("max_source_length", "max_target_length", "max_new_tokens"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise TaskError(f"{where}: `{key}` must be a positive integer or null, got {value!r}")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, name: str, definition: Mapping[str, Any]) -> TaskSpec:
        """Build from a plain mapping (YAML entry); unknown keys raise ``TaskError`` naming them."""
        unknown, allowed = unknown_keys(cls, definition, exclude=("name",))
        if unknown:
            raise TaskError(f"task {name!r}: unknown keys {unknown}; allowed: {allowed}")
        try:
            return cls(name=name, **dict(definition))
        except TypeError as err:  # a required key is missing
            raise TaskError(f"task {name!r}: {err}") from err

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (for YAML, fingerprints and logs)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for key in ("label_values", "char_limits", "row_filter"):
            out[key] = dict(out[key]) if out[key] is not None else None
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    # ------------------------------------------------------------------ properties
    @property
    def kind(self) -> str:
        """``classification`` (label words), ``regression`` (a score grid), ``choice`` (the label is the index of
        one of the row's ``choices``) or ``text`` (gold answers in ``answers_column``, scored as text)."""
        if self.label_words is not None:
            return "classification"
        if self.regression_grid is not None:
            return "regression"
        return "text" if self.answers_column is not None else "choice"

    @property
    def is_regression(self) -> bool:
        """True for score tasks (stsb)."""
        return self.regression_grid is not None

    @property
    def num_labels(self) -> int:
        """Number of classes: the label words, or a fixed number of choice columns (copa: 2); else 0."""
        if self.label_words is not None:
            return len(self.label_words)
        return len(self.choices) if self.kind == "choice" and len(self.choices or ()) > 1 else 0

    @property
    def has_candidates(self) -> bool:
        """Whether rank classification applies: fixed candidates (label words, the score grid) or the row's own
        choices. A text task without choices (extractive QA) is always generated."""
        return self.kind in ("classification", "regression") or self.choices is not None

    @property
    def input_columns(self) -> tuple[str, ...]:
        """Columns the template reads, in order of appearance."""
        return _columns(self.template)

    @property
    def input_template(self) -> str:
        """The template of ``input_format``: ``template``, or the authors' (``authors_template``, else
        ``template`` with its ``"<task>: "`` prefix written ``"src-<task>: "``)."""
        if self.input_format == "paper":
            return self.template
        if self.authors_template is not None:
            return self.authors_template
        body = self.template.removeprefix(f"{self.name}: ")
        return f"{AUTHORS_PREFIX}{self.name}: {body}"

    @property
    def gold_column(self) -> str:
        """The column holding the gold answer: ``answers_column`` for a text task, else ``label_column``."""
        return self.answers_column if self.kind == "text" else self.label_column  # type: ignore[return-value]

    @property
    def required_columns(self) -> tuple[str, ...]:
        """Columns every row must have: template columns, the gold column, the choices, the group columns (their
        top-level names), the context and what the ``preprocess`` rewrite reads."""
        extra = [
            self.gold_column,
            *(self.choices or ()),
            *(c.split(".")[0] for c in self.group_columns or ()),
        ]
        extra += [self.context_column] if self.context_column else []
        extra += list(REWRITES[self.preprocess].reads) if self.preprocess else []
        return tuple(dict.fromkeys([*self.input_columns, *extra]))

    # ------------------------------------------------------------------ row -> text
    def format_input(self, row: Mapping[str, Any]) -> str:
        """Input text of one row, e.g. ``"rte: sentence1: A man sleeps. sentence2: A man rests."``.

        With ``input_format="authors_compat"`` it is the authors' string: ``authors_template`` filled (a missing
        value written ``none``) and stripped, e.g. ``"src-rte: sentence1: A man sleeps. sentence2: A man
        rests."`` (``attempt/data/tasks.py`` c7a19a2 L659–681).

        With ``truncation="chars_compat"`` the text is cut as the authors' code cut it: each column to its
        ``char_limits`` entry, then to ``511 − len(target) − 50`` characters (the row's target, or the longest
        valid answer without a label) — their whole string with ``authors_compat``, its part after the
        ``"<task>: "`` prefix (which their strings did not have) with ``paper``.
        """
        try:
            if self.preprocess is not None:
                row = REWRITES[self.preprocess].apply(row)
            values = {c: _as_text(row[c]) for c in self.input_columns}
        except KeyError as err:
            raise TaskError(
                f"task {self.name!r}: row has no column {err.args[0]!r} (has {sorted(row)})"
            ) from err
        authors = self.input_format == "authors_compat"
        if authors:  # their ' '.join of the fields fell back to 'none' for a missing one
            values = {c: "none" if v is None else v for c, v in values.items()}
        if self.truncation == "chars_compat":
            limits = self.char_limits or {}
            values = {c: str(v)[: limits[c]] if c in limits else v for c, v in values.items()}
        text = self.input_template.format_map(values)
        if authors:
            text = text.strip()
        if self.truncation == "tokens":
            return text
        prefix = f"{self.name}: " if not authors and text.startswith(f"{self.name}: ") else ""
        keep = AUTHORS_MAX_CHARS - self._target_chars(row) - AUTHORS_PROMPT_RESERVE
        return prefix + text[len(prefix) :][: max(keep, 0)]

    def _target_chars(self, row: Mapping[str, Any]) -> int:
        """Characters of the row's target text; the longest valid answer when the row has no usable label."""
        try:
            return len(self.format_target(row))
        except (TaskError, KeyError, TypeError, IndexError):
            return max((len(c) for c in self.candidates(row)), default=0)

    def row_choices(self, row: Mapping[str, Any]) -> list[str]:
        """The row's own answer choices (``choices``), as text; ``[]`` for a task without them."""
        if not self.choices:
            return []
        if len(self.choices) == 1:
            values = row[self.choices[0]]
            if not isinstance(values, list | tuple):
                raise TaskError(f"task {self.name!r}: column {self.choices[0]!r} must hold a list of choices")
            return [str(v) for v in values]
        return [str(row[c]) for c in self.choices]

    def gold_answers(self, row: Mapping[str, Any]) -> list[str]:
        """Every gold answer text of a row: a text task's answers (SQuAD's ``{text: [...]}``, a list or a string),
        else the one target text."""
        if self.kind != "text":
            return [self.format_target(row)]
        raw = row[self.answers_column]  # type: ignore[index]
        if isinstance(raw, Mapping):
            raw = raw.get("text")
        answers = [raw] if isinstance(raw, str) else list(raw) if isinstance(raw, list | tuple) else None
        if not answers or not all(isinstance(a, str) for a in answers):
            raise TaskError(
                f"task {self.name!r}: no gold answer text in column {self.answers_column!r}: {raw!r}"
            )
        return answers

    def group_key(self, row: Mapping[str, Any]) -> str | None:
        """The row's question group (``group_columns`` values joined), or None for a task without groups."""
        if not self.group_columns:
            return None
        return "/".join(str(column_value(row, c)) for c in self.group_columns)

    def label_id(self, row: Mapping[str, Any]) -> int:
        """Class id of a classification row, or the index of the right choice of a choice row; ``TaskError`` when
        the label is not one of the task's labels."""
        raw = row[self.label_column]
        n = self.num_labels if self.kind == "classification" else len(self.row_choices(row))
        if self.label_values is not None and isinstance(raw, str):
            if raw not in self.label_values:
                raise TaskError(
                    f"task {self.name!r}: label {raw!r} is not one of {sorted(self.label_values)}"
                )
            return self.label_values[raw]
        if isinstance(raw, bool) or not isinstance(raw, int | float) or raw != int(raw) or not 0 <= raw < n:
            raise TaskError(f"task {self.name!r}: label {raw!r} is outside the class ids 0..{n - 1}")
        return int(raw)

    def score(self, row: Mapping[str, Any]) -> float:
        """Regression score of a row; ``TaskError`` when it is missing or outside ``regression_range``."""
        raw = row[self.label_column]
        low, high = self.regression_range
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not low <= raw <= high:
            raise TaskError(f"task {self.name!r}: score {raw!r} is outside the range {low}..{high}")
        return float(raw)

    def gold(self, row: Mapping[str, Any]) -> float:
        """Gold value for metrics: the class id as a float, or the regression score — unrounded, or with
        ``regression_targets="round1_compat"`` rounded as its target text is (the authors' code)."""
        if self.kind == "text":
            return math.nan
        if not self.is_regression:
            return float(self.label_id(row))
        score = self.score(row)
        return float(self.format_target(row)) if self.regression_targets == "round1_compat" else score

    def format_target(self, row: Mapping[str, Any]) -> str:
        """Target text: the label word, or the score rounded to the grid (stsb 3.77 -> ``"3.8"``); with
        ``regression_targets="round1_compat"`` ``np.round(score, 1)`` (3.25 -> ``"3.2"``, 3.9 -> ``"3.9"``)."""
        if self.kind == "text":
            return self.gold_answers(row)[0]
        if self.kind == "choice":
            return self.row_choices(row)[self.label_id(row)]
        if not self.is_regression:
            return self.label_words[self.label_id(row)]  # type: ignore[index]
        if self.regression_targets == "round1_compat":
            return f"{float(np.round(self.score(row), 1)):.1f}"
        return self._grid_text(self.score(row))

    # ------------------------------------------------------------------ text -> value
    def candidates(self, row: Mapping[str, Any] | None = None) -> list[str]:
        """Every valid target text: the label words, or for regression each value of the target grid
        (``"0.0" .. "5.0"``, every 0.2 — or every 0.1 with ``regression_targets="round1_compat"``); for a task
        with per-row choices the row's choices (``[]`` without a row)."""
        if self.kind in ("choice", "text"):
            return self.row_choices(row) if row is not None else []
        if not self.is_regression:
            return list(self.label_words)  # type: ignore[arg-type]
        low, high = self.regression_range
        grid = self._target_grid
        steps = round((high - low) / grid)
        return [self._grid_text(low + i * grid, grid) for i in range(steps + 1)]

    def parse(self, text: str, choices: Sequence[str] | None = None) -> float | None:
        """Prediction text -> class id (as float) or score; ``None`` when the text is not a valid answer.

        With ``answer_parsing="first_word_compat"`` a classification answer longer than one word is read by its
        first word, as the authors' code did (an invalid regression answer scores :attr:`invalid_score`).
        A task with per-row choices reads the index of the row's choice the text matches (case, punctuation and
        spacing aside: :func:`match_key`), None when it matches none; a text task without choices has no value
        (None: its text is the answer, see :attr:`has_candidates`)."""
        if self.kind in ("choice", "text"):
            keys = [match_key(c) for c in choices or ()]
            key = match_key(text)
            return float(keys.index(key)) if key in keys else None
        text = text.strip()
        if not self.is_regression:
            if self.answer_parsing == "first_word_compat":
                text = text.split()[0] if text.split() else ""
            words = [w.lower() for w in self.label_words]  # type: ignore[union-attr]
            return float(words.index(text.lower())) if text.lower() in words else None
        try:
            value = float(text)
        except ValueError:
            return None
        return value if math.isfinite(value) else None

    @property
    def invalid_score(self) -> float:
        """Regression only: the score an invalid answer counts as — the middle of the range (an uninformative
        guess), or −1 with ``answer_parsing="first_word_compat"`` (the authors' ``string_to_float``)."""
        if self.answer_parsing == "first_word_compat":
            return AUTHORS_INVALID_SCORE
        low, high = self.regression_range
        return (low + high) / 2

    @property
    def _target_grid(self) -> float:
        return 0.1 if self.regression_targets == "round1_compat" else self.regression_grid  # type: ignore[return-value]

    def _grid_text(self, value: float, grid: float | None = None) -> str:
        """Round half-up to the grid and print with the grid's decimals (0.2 -> one decimal)."""
        grid = grid or self.regression_grid
        rounded = math.floor(value / grid + 0.5 + 1e-9) * grid  # type: ignore[operator]
        decimals = len(f"{grid:f}".rstrip("0").partition(".")[2])
        return f"{rounded:.{decimals}f}"


def match_key(text: str) -> str:
    """How a generated answer is compared with a choice: case-folded, punctuation dropped, spaces collapsed
    (``"The man left."`` and ``"the man left"`` match)."""
    return " ".join("".join(ch for ch in text.casefold() if ch not in string.punctuation).split())


def column_value(row: Mapping[str, Any], column: str) -> Any:
    """A row's value of ``column``; ``a.b`` reads field ``b`` of the mapping in column ``a`` (multirc's ``idx``)."""
    value: Any = row
    for part in column.split("."):
        value = value[part]
    return value


def _as_text(value: Any) -> Any:
    """A list value (record's entities) is written comma-separated in the input text."""
    return ", ".join(str(v) for v in value) if isinstance(value, list | tuple) else value


def _columns(template: str) -> tuple[str, ...]:
    """The ``{column}`` fields of a template, in order of appearance, each once."""
    return tuple(dict.fromkeys(f for _, f, _, _ in string.Formatter().parse(template) if f))


def as_plain(value: Any) -> Any:
    """Recursively turn mapping/sequence containers (e.g. OmegaConf nodes) into dict/list."""
    if isinstance(value, Mapping):
        return {str(k): as_plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [as_plain(v) for v in value]
    return value
