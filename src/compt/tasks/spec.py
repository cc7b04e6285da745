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

#: metric names a task may list (computed by ``compt.evaluation``)
KNOWN_METRICS = ("accuracy", "matthews", "f1", "pearson", "spearman")
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
    metrics: tuple[str, ...] = ("accuracy",)
    """metric names from KNOWN_METRICS; the first one is the task's primary metric"""
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

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731  (frozen dataclass normalisation)
        if self.label_words is not None:
            set_("label_words", tuple(str(w) for w in self.label_words))
        if self.label_values is not None:
            set_(
                "label_values", MappingProxyType({str(k): int(v) for k, v in dict(self.label_values).items()})
            )
        set_("metrics", tuple(self.metrics))
        set_("regression_range", tuple(float(x) for x in self.regression_range))
        if self.char_limits is not None:
            set_("char_limits", MappingProxyType({str(k): int(v) for k, v in dict(self.char_limits).items()}))
        if self.compat_metric is None:
            set_("compat_metric", "spearman" if self.is_regression else "accuracy")
        self._validate()

    def _validate(self) -> None:
        where = f"task {self.name!r}"
        if not self.name or not isinstance(self.name, str):
            raise TaskError("a task needs a non-empty string `name`")
        if (self.label_words is None) == (self.regression_grid is None):
            raise TaskError(
                f"{where}: set exactly one of `label_words` (classification) or `regression_grid`"
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
        for key in ("label_values", "char_limits"):
            out[key] = dict(out[key]) if out[key] is not None else None
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    # ------------------------------------------------------------------ properties
    @property
    def is_regression(self) -> bool:
        """True for score tasks (stsb), False for classification."""
        return self.label_words is None

    @property
    def num_labels(self) -> int:
        """Number of classes (0 for regression)."""
        return 0 if self.label_words is None else len(self.label_words)

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
    def required_columns(self) -> tuple[str, ...]:
        """Columns every row must have: template columns and the label column."""
        return (*self.input_columns, self.label_column)

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
            values = {c: row[c] for c in self.input_columns}
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
        except (TaskError, KeyError, TypeError):
            return max(len(c) for c in self.candidates())

    def label_id(self, row: Mapping[str, Any]) -> int:
        """Class id of a classification row; ``TaskError`` when the label is not one of the task's labels."""
        raw = row[self.label_column]
        n = self.num_labels
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
        if not self.is_regression:
            return float(self.label_id(row))
        score = self.score(row)
        return float(self.format_target(row)) if self.regression_targets == "round1_compat" else score

    def format_target(self, row: Mapping[str, Any]) -> str:
        """Target text: the label word, or the score rounded to the grid (stsb 3.77 -> ``"3.8"``); with
        ``regression_targets="round1_compat"`` ``np.round(score, 1)`` (3.25 -> ``"3.2"``, 3.9 -> ``"3.9"``)."""
        if not self.is_regression:
            return self.label_words[self.label_id(row)]  # type: ignore[index]
        if self.regression_targets == "round1_compat":
            return f"{float(np.round(self.score(row), 1)):.1f}"
        return self._grid_text(self.score(row))

    # ------------------------------------------------------------------ text -> value
    def candidates(self) -> list[str]:
        """Every valid target text: the label words, or for regression each value of the target grid
        (``"0.0" .. "5.0"``, every 0.2 — or every 0.1 with ``regression_targets="round1_compat"``)."""
        if not self.is_regression:
            return list(self.label_words)  # type: ignore[arg-type]
        low, high = self.regression_range
        grid = self._target_grid
        steps = round((high - low) / grid)
        return [self._grid_text(low + i * grid, grid) for i in range(steps + 1)]

    def parse(self, text: str) -> float | None:
        """Prediction text -> class id (as float) or score; ``None`` when the text is not a valid answer.

        With ``answer_parsing="first_word_compat"`` a classification answer longer than one word is read by its
        first word, as the authors' code did (an invalid regression answer scores :attr:`invalid_score`)."""
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
