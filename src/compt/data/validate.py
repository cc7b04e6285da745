"""Checks that a loaded split fits its task: not empty, columns present, text in every text field (no null,
no list, valid UTF-8), every label valid; and the same text check for rows given to ``compt predict``.

Problems are errors (``compt data check`` lists them all, training refuses the split with them); warnings
(a text field that is blank after stripping) are reported and training goes on.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from compt.errors import DataError, TaskError
from compt.tasks import TaskSpec

if TYPE_CHECKING:  # imported by the functions that need it: `compt predict` checks rows without it
    import datasets

log = logging.getLogger(__name__)

#: row numbers shown per problem
SHOWN_ROWS = 5


def find_problems(task: TaskSpec, split: str, dataset: datasets.Dataset, origin: str = "") -> list[str]:
    """Every problem of ``task``/``split`` (one message each); empty list = the split is usable."""
    where = f"{task.name}/{split}" + (f" ({origin})" if origin else "")
    if len(dataset) == 0:
        return [empty_split(where)]
    missing = [c for c in task.required_columns if c not in dataset.column_names]
    problems = []
    if missing:
        problems.append(f"{where}: missing column(s) {missing}; the file has {dataset.column_names}")
    problems += [f"{where}: {p}" for p in text_report(task, dataset)[0]]
    if task.gold_column in missing:
        return problems
    if task.kind in ("classification", "regression"):
        problems += [f"{where}: {p}" for p in _label_problems(task, dataset)]
    if task.kind in ("choice", "text") or task.group_columns:
        problems += [f"{where}: {p}" for p in answer_report(task, dataset, missing)[0]]
    return problems


def empty_split(where: str) -> str:
    """The problem of a split without rows; ``where`` is ``task/split (origin)``."""
    return f"{where}: the split is empty (the file holds no rows)"


def _label_problems(task: TaskSpec, dataset: datasets.Dataset) -> list[str]:
    """Labels outside a classification task's labels or a regression task's range (counted per value)."""
    counts = Counter(_hashable(v) for v in dataset[task.label_column])
    bad = {}
    for key, count in counts.items():
        try:
            task.gold({task.label_column: key[1]})
        except (TaskError, TypeError):
            bad[key] = count
    if not bad:
        return []
    allowed = (
        f"scores in {task.regression_range[0]}..{task.regression_range[1]}"
        if task.is_regression
        else f"class ids 0..{task.num_labels - 1}"
        + (f" or {sorted(task.label_values)}" if task.label_values else "")
    )
    shown = ", ".join(f"{v!r} ({n} rows)" for (_, v), n in list(bad.items())[:5])
    return [f"{sum(bad.values())} row(s) with a label outside the task's labels: {shown}; allowed: {allowed}"]


def answer_report(
    task: TaskSpec, dataset: datasets.Dataset, missing: Sequence[str] = ()
) -> tuple[list[str], list[str]]:
    """``(problems, warnings)`` of the answers of a task with per-row choices or text answers, row by row: no
    choices, a label that is not a choice's index, no gold answer text, an unreadable group column (problems);
    an answer that is not in the row's context or not among its choices (warnings)."""
    columns = [c for c in dict.fromkeys(task.required_columns) if c not in missing]
    found: dict[str, list[int]] = {}
    for index, row in enumerate(dataset.select_columns(columns)):
        for kind in _row_answer_issues(task, row):
            found.setdefault(kind, []).append(index)
    problems = [
        f"{kind} in {describe_rows(rows)}" for kind, rows in found.items() if not kind.startswith("warning:")
    ]
    warnings = [
        f"{kind[len('warning: ') :]} in {describe_rows(rows)}"
        for kind, rows in found.items()
        if kind.startswith("warning:")
    ]
    return problems, warnings


def _row_answer_issues(task: TaskSpec, row: Mapping[str, Any]) -> list[str]:
    """What is wrong (or, prefixed ``warning:``, suspicious) about one row's choices, answers and groups."""
    issues = []
    try:
        choices = task.row_choices(row)
    except (TaskError, KeyError, TypeError):
        choices = None
    if task.choices and not choices:
        issues.append(f"no answer choices (column(s) {list(task.choices)})")
    if task.kind == "choice" and choices:
        try:
            task.label_id(row)
        except (TaskError, TypeError):
            issues.append(
                f"a label that is not the index of one of the row's choices (column {task.label_column!r})"
            )
    if task.kind == "text":
        try:
            answers = task.gold_answers(row)
        except (TaskError, TypeError, KeyError):
            answers = []
            issues.append(f"no gold answer text (column {task.answers_column!r})")
        context = row.get(task.context_column) if task.context_column else None
        if isinstance(context, str) and any(a not in context for a in answers):
            issues.append(f"warning: a gold answer that is not in column {task.context_column!r}")
        if choices and any(a not in choices for a in answers):
            issues.append("warning: a gold answer that is not among the row's choices")
    if task.group_columns:
        try:
            task.group_key(row)
        except (KeyError, TypeError, IndexError):
            issues.append(f"no question group (columns {list(task.group_columns)})")
    return issues


def find_warnings(task: TaskSpec, split: str, dataset: datasets.Dataset, origin: str = "") -> list[str]:
    """What is suspicious but usable in ``task``/``split``: text fields blank after stripping."""
    if len(dataset) == 0:
        return []
    where = f"{task.name}/{split}" + (f" ({origin})" if origin else "")
    found = text_report(task, dataset)[1]
    if task.kind == "text" and task.gold_column in dataset.column_names:
        missing = [c for c in task.required_columns if c not in dataset.column_names]
        found += answer_report(task, dataset, missing)[1]
    return [f"{where}: {w}" for w in found]


def duplicate_rows(task: TaskSpec, dataset: datasets.Dataset) -> list[int]:
    """Rows whose input columns repeat an earlier row's (the text the model sees twice), read from the Arrow
    table; empty when there are none or the columns cannot be compared."""
    if dataset._indices is not None:
        dataset = dataset.flatten_indices()
    table = dataset.data.table
    listed = list_columns(task)  # record's entity lists: the row's text is in its other columns
    columns = [c for c in task.input_columns if c in table.column_names and c not in listed]
    if not columns or not table.num_rows:
        return []
    keyed = table.select(columns).append_column("__row", pa.array(range(table.num_rows), pa.int64()))
    try:
        firsts = keyed.group_by(columns).aggregate([("__row", "min")]).column("__row_min")
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):  # e.g. list cells: a problem
        return []
    return _true_rows(pc.invert(pc.is_in(keyed.column("__row"), value_set=firsts.combine_chunks())))


def duplicate_warning(task: TaskSpec, dataset: datasets.Dataset) -> str | None:
    """The warning for :func:`duplicate_rows` (None when there are none)."""
    repeated = duplicate_rows(task, dataset)
    if not repeated:
        return None
    return (
        f"{describe_rows(repeated)} repeat the input of an earlier row: a k-shot sample can then draw one example "
        "twice, and development rows (data.validation_from_train) can copy k-shot rows; drop the duplicates"
    )


def development_copies(
    task: TaskSpec, train: Sequence[Mapping], development: Sequence[Mapping]
) -> str | None:
    """The warning for development rows (carved from the train split, ``data.validation_from_train``) whose
    input is a k-shot training row's (the split repeats rows): their validation score counts examples the
    prompts were trained on. Examples carry ``input_ids``; development ones also ``row`` (None: no copy)."""
    seen = {tuple(example["input_ids"]) for example in train}
    copies = sorted(e["row"] for e in development if tuple(e["input_ids"]) in seen)
    if not copies:
        return None
    return (
        f"{task.name}: {len(copies)} of {len(development)} development row(s) have the same input as a k-shot "
        f"training row ({task.train_split} {describe_rows(copies)}): the split repeats rows, so validation counts "
        "examples the prompts were trained on; drop the duplicated rows (`compt data check` lists them)"
    )


def check_split(task: TaskSpec, split: str, dataset: datasets.Dataset, origin: str = "") -> None:
    """Raise ``DataError`` listing every problem of the split, if any; log its warnings."""
    problems = find_problems(task, split, dataset, origin)
    if problems:
        raise DataError("\n".join(problems))
    for warning in find_warnings(task, split, dataset, origin):
        log.warning("[compt] warning: %s", warning)


def text_report(task: TaskSpec, dataset: datasets.Dataset) -> tuple[list[str], list[str]]:
    """``(problems, warnings)`` of the dataset's text: every string column must be valid UTF-8 (any column
    is read when a row is encoded); every input column of the task must hold text (or numbers) in every row;
    blank text is a warning. Read from the Arrow table, without converting rows to Python."""
    if dataset._indices is not None:  # a selection: look at the selected rows
        dataset = dataset.flatten_indices()
    table = dataset.data.table
    problems, warnings = [], []
    for name in table.column_names:
        column = table.column(name)
        if _is_text(column.type):
            bad = invalid_utf8_rows(column)
            if bad:
                problems.append(
                    f"column {name!r} is not valid UTF-8 in {describe_rows(bad)}; re-encode the file as UTF-8"
                )
                continue
        if name not in task.input_columns:
            continue
        kind = column.type
        listed = name in list_columns(task) and pa.types.is_list(kind) and _is_text(kind.value_type)
        if not (_is_text(kind) or pa.types.is_null(kind) or _is_number(kind) or listed):
            problems.append(f"column {name!r} holds {kind} values, not text")
            continue
        nulls = _true_rows(pc.is_null(column))
        if nulls:
            problems.append(
                f"column {name!r} has no text (null or missing) in {describe_rows(nulls)}; fill or drop them"
            )
        if _is_text(kind):
            blank = _true_rows(pc.equal(pc.utf8_trim_whitespace(column), ""))
            if blank:
                warnings.append(
                    f"column {name!r} is blank in {describe_rows(blank)}; they are used as empty text"
                )
    return problems, warnings


def invalid_utf8_rows(column: pa.ChunkedArray) -> list[int]:
    """Rows of a string column whose bytes are not valid UTF-8 (which Arrow's JSON reader lets through)."""
    bad, offset = [], 0
    for chunk in column.chunks:
        try:
            chunk.validate(full=True)
        except pa.ArrowInvalid:
            for index, value in enumerate(chunk.cast(pa.binary()).to_pylist()):
                try:
                    (value or b"").decode("utf-8")
                except UnicodeDecodeError:
                    bad.append(offset + index)
        offset += len(chunk)
    return bad


def row_text_problems(task: TaskSpec, rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    """``(problems, warnings)`` of the input columns of Python rows (``compt predict``): a field that is
    missing, null, or a list or dict is a problem; blank text a warning."""
    check = RowTextCheck(task)
    check.add(rows)
    return check.report()


class RowTextCheck:
    """:func:`row_text_problems` over rows that arrive in chunks (``compt predict`` streams its input): row
    numbers count from the first row of the first chunk, and memory stays flat (a few row numbers per kind of
    problem are kept, the others counted)."""

    def __init__(self, task: TaskSpec) -> None:
        self.task = task
        self.rows = 0
        self.found: dict[tuple[str | None, str], tuple[list[int], int]] = {}

    def add(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Check the next chunk of rows."""
        listed = list_columns(self.task)
        for offset, row in enumerate(rows):
            self.add_row(self.rows + offset, row, listed)
        self.rows += len(rows)

    def add_row(self, number: int, row: Mapping[str, Any], listed: tuple[str, ...] | None = None) -> None:
        """Check one row, numbered ``number`` in the messages (rows of several tasks interleaved in one input:
        each task's check sees its own rows under their numbers in the input; ``rows`` is not advanced).
        ``listed``: :func:`list_columns` of the task (computed when not given)."""
        listed = list_columns(self.task) if listed is None else listed
        for name in self.task.input_columns:
            kind = _text_kind(row.get(name) if isinstance(row, Mapping) else None, name in listed)
            if kind is not None:
                self._note(name, kind, number)
        if self.task.choices and not has_choices(self.task, row):
            self._note(None, NO_CHOICES, number)

    def _note(self, name: str | None, kind: str, number: int) -> None:
        shown, count = self.found.get((name, kind), ([], 0))
        if len(shown) <= SHOWN_ROWS:
            shown.append(number)
        self.found[(name, kind)] = (shown, count + 1)

    def report(self) -> tuple[list[str], list[str]]:
        """``(problems, warnings)`` so far, one message per column and kind (and one for rows without choices)."""
        problems = [
            f"no answer choices (column(s) {list(self.task.choices or ())}) in {describe_rows(*r)}"
            if k == NO_CHOICES
            else f"column {n!r} {k} in {describe_rows(*r)}"
            for (n, k), r in self.found.items()
            if k != BLANK
        ]
        warnings = [
            f"column {n!r} is blank in {describe_rows(*r)}" for (n, k), r in self.found.items() if k == BLANK
        ]
        return problems, warnings


def has_choices(task: TaskSpec, row: Any) -> bool:
    """Whether ``row`` carries at least one answer choice of a task with per-row choices."""
    try:
        return bool(task.row_choices(row))
    except (TaskError, KeyError, TypeError, AttributeError):
        return False


BLANK = "is blank"
NO_CHOICES = "has no answer choices"


def _text_kind(value: Any, listed: bool = False) -> str | None:
    """What is wrong with an input field's value (None: it is text or a number; ``listed``: the column may hold
    a list of texts, :func:`list_columns`)."""
    if value is None:
        return "has no text (null or missing)"
    if isinstance(value, dict) or (
        isinstance(value, list | tuple) and not (listed and all(isinstance(v, str) for v in value))
    ):
        return f"holds a {type(value).__name__}, not text"
    if isinstance(value, str) and not value.strip():
        return BLANK
    return None


def list_columns(task: TaskSpec) -> tuple[str, ...]:
    """Input columns that may hold a list of texts: a task's one list column of choices (record's entities)."""
    return tuple(task.choices or ()) if len(task.choices or ()) == 1 else ()


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _is_number(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)


def _true_rows(mask: pa.ChunkedArray | pa.Array) -> list[int]:
    return pc.indices_nonzero(pc.fill_null(mask, False)).to_pylist()


def describe_rows(indices: Iterable[int], count: int | None = None) -> str:
    """``"2 row(s): 4, 9 (numbered from 0)"``, at most :data:`SHOWN_ROWS` numbers; ``count``: how many rows
    there are when ``indices`` holds only the first ones."""
    indices = list(indices)
    count = len(indices) if count is None else count
    shown = ", ".join(map(str, indices[:SHOWN_ROWS])) + (", ..." if count > SHOWN_ROWS else "")
    return f"{count} row(s): {shown} (numbered from 0)"


def _hashable(value: object) -> tuple[type, object]:
    """A key that counts ``value`` apart from every value of another type (``True == 1`` in Python, but a
    boolean label is not the class id 1); lists (unexpected label cells) become tuples."""
    return type(value), tuple(value) if isinstance(value, list) else value
