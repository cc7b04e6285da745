"""The rows ``compt predict`` reads, in chunks, so that memory stays flat in the number of rows.

``.jsonl`` (and a ``.json`` file of JSON lines) is read line by line, ``.csv`` by pandas in chunks (the parser
and type inference ``datasets`` uses for training files), ``.parquet`` by record batches; a ``.json`` file
holding one JSON array is read whole. Rows keep the hub's column names and values, as training data does.
Nothing here imports ``datasets`` or torch.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from compt.data.sources import LOCAL_FORMATS
from compt.data.validate import SHOWN_ROWS, RowTextCheck, describe_rows
from compt.errors import InferenceError
from compt.tasks import TaskSpec

log = logging.getLogger(__name__)

#: rows read at once (predictions are made and written chunk by chunk)
CHUNK_ROWS = 1024


def row_chunks(path: str | Path, size: int = CHUNK_ROWS) -> Iterator[list[dict[str, Any]]]:
    """The rows of a ``.jsonl``/``.json``/``.csv``/``.parquet`` file, ``size`` at a time (the last chunk may be
    shorter; a file without rows yields nothing).

    Raises:
        InferenceError: the file is missing, of another kind, not valid UTF-8, or cannot be parsed (the
            message names the file and, for JSON lines, the line).
    """
    path = Path(path)
    if not path.is_file():
        raise InferenceError(f"input file {path} does not exist")
    if path.suffix not in LOCAL_FORMATS:
        raise InferenceError(f"input {path}: use one of {', '.join(LOCAL_FORMATS)}")
    reader = {".jsonl": _json_lines, ".json": _json, ".csv": _csv, ".parquet": _parquet}[path.suffix]
    try:
        yield from reader(path, size)
    except UnicodeDecodeError as err:
        raise InferenceError(f"input {path} is not valid UTF-8 ({err}); re-encode it as UTF-8") from err
    except InferenceError:
        raise
    except Exception as err:  # a parser's error (pandas, pyarrow): the file is not what its name says
        reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise InferenceError(f"cannot read {path}: {type(err).__name__}: {reason}".rstrip(": ")) from err


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Every row of a ``.jsonl``/``.json``/``.csv``/``.parquet`` file (the hub's column names), in memory.

    Raises:
        InferenceError: as :func:`row_chunks`, or the file holds no rows.
    """
    rows = [row for chunk in row_chunks(path) for row in chunk]
    if not rows:
        raise InferenceError(f"input file {path} holds no rows")
    return rows


#: the column that names a row's task when rows of several tasks are predicted together
TASK_COLUMN = "task"


class RowCheck:
    """The rows of an input, checked chunk by chunk before anything is predicted (memory stays flat: a few row
    numbers per kind of problem are kept, the others counted).

    Each row is answered under one of the bank's ``tasks``: ``task`` when given (a row whose ``task`` column
    names another task is refused rather than answered under the wrong one), else the row's own ``task``
    column. A row without a task, or whose task the bank lacks, is a problem; so is a row without text in an
    input column of its task (:class:`RowTextCheck`, one per task); blank text is a warning.
    """

    def __init__(
        self, tasks: Sequence[TaskSpec], task: str | None = None, no_task: str = "add one, or pass --task"
    ) -> None:
        self.tasks = {spec.name: spec for spec in tasks}
        self.task = task
        self.no_task = no_task
        """what to do about a row without a task, said in its message"""
        self.rows = 0
        self.text: dict[str, RowTextCheck] = {}
        self.wrong: dict[str, tuple[list[int], int]] = {}
        """rows refused for their task, by problem: (the first row numbers, how many)"""

    def row_task(self, row: Mapping[str, Any]) -> Any:
        """The task a row is answered under (not checked): ``task``, else its ``task`` column (None if none)."""
        if self.task is not None:
            return self.task
        return row.get(TASK_COLUMN) if isinstance(row, Mapping) else None

    def add(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Check the next chunk of rows."""
        for offset, row in enumerate(rows):
            self.add_row(self.rows + offset, row)
        self.rows += len(rows)

    def add_row(self, number: int, row: Mapping[str, Any]) -> None:
        """Check one row numbered ``number`` (``rows`` is not advanced)."""
        problem = self._task_problem(row)
        if problem is not None:
            shown, count = self.wrong.get(problem, ([], 0))
            if len(shown) <= SHOWN_ROWS:
                shown.append(number)
            self.wrong[problem] = (shown, count + 1)
            return
        name = self.row_task(row)
        if name not in self.text:
            self.text[name] = RowTextCheck(self.tasks[name])
        self.text[name].add_row(number, row)

    def _task_problem(self, row: Mapping[str, Any]) -> str | None:
        own = row.get(TASK_COLUMN) if isinstance(row, Mapping) else None
        if self.task is not None:
            if own is not None and own != self.task:
                return f"name another task than {self.task!r} in their {TASK_COLUMN!r} column"
            return None
        if own is None:
            return f"have no {TASK_COLUMN!r} (the task to answer them under): {self.no_task}"
        if not isinstance(own, str) or own not in self.tasks:
            return f"are of task {own!r}, which this bank lacks (its tasks are: {', '.join(self.tasks)})"
        return None

    def report(self) -> tuple[list[str], list[str]]:
        """``(problems, warnings)`` so far, one line each."""
        problems = [f"{describe_rows(*rows)} {problem}" for problem, rows in self.wrong.items()]
        warnings = []
        for name, check in self.text.items():
            found, blank = check.report()
            if found:
                columns = list(self.tasks[name].input_columns)
                problems.append(f"{'; '.join(found)} (task {name!r} reads {columns})")
            warnings += [f"{w} (task {name!r})" for w in blank]
        return problems, warnings

    def raise_problems(self, origin: str) -> None:
        """Raise the problems found as one line naming ``origin`` and the rows (nothing is predicted); log the
        warnings."""
        problems, warnings = self.report()
        if problems:
            raise InferenceError(
                f"{origin}: {'; '.join(problems)}. Fix or drop these rows: nothing was predicted"
            )
        for warning in warnings:
            log.warning("compt: warning: %s: %s", origin, warning)


def check_input(path: str | Path, tasks: TaskSpec | Sequence[TaskSpec], task: str | None = None) -> int:
    """Read the whole input once, in chunks, before anything is predicted (:class:`RowCheck`: every row must
    parse, be of one of ``tasks`` — ``task`` when given, else its ``task`` column — and have text in each input
    column of its task); one line naming the rows otherwise. ``tasks`` may be one task (then ``task`` is it).

    Returns:
        The number of rows.
    """
    check = _row_check(tasks, task)
    for chunk in row_chunks(path):
        check.add(chunk)
    if check.rows == 0:
        raise InferenceError(f"input file {path} holds no rows")
    check.raise_problems(str(path))
    return check.rows


def check_rows(
    tasks: TaskSpec | Sequence[TaskSpec],
    rows: Sequence[Mapping[str, Any]],
    origin: str,
    task: str | None = None,
) -> None:
    """:func:`check_input` for rows in memory; ``origin`` names them in the message."""
    check = _row_check(tasks, task)
    check.add(rows)
    check.raise_problems(origin)


def _row_check(tasks: TaskSpec | Sequence[TaskSpec], task: str | None) -> RowCheck:
    if isinstance(tasks, TaskSpec):
        return RowCheck([tasks], tasks.name)
    return RowCheck(tasks, task)


# ---------------------------------------------------------------------------------------------- readers
def _json_lines(path: Path, size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    with path.open(encoding="utf-8-sig") as handle:  # a byte-order mark is not part of the first row
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise InferenceError(
                    f"cannot read {path}: line {number} is not JSON ({err.msg} at column {err.colno})"
                ) from None
            if not isinstance(row, dict):
                raise InferenceError(
                    f"cannot read {path}: line {number} is a JSON {type(row).__name__}, not an object "
                    "with the task's columns"
                )
            chunk.append(row)
            if len(chunk) == size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def _json(path: Path, size: int) -> Iterator[list[dict[str, Any]]]:
    """A JSON array of objects (read whole), or JSON lines."""
    with path.open(encoding="utf-8-sig") as handle:
        start = handle.read(4096).lstrip()[:1]
    if start != "[":
        yield from _json_lines(path, size)
        return
    try:
        rows = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as err:
        raise InferenceError(f"cannot read {path}: not JSON ({err.msg} at line {err.lineno})") from None
    if not all(isinstance(row, dict) for row in rows):
        raise InferenceError(f"cannot read {path}: the JSON array holds something other than objects")
    for start_row in range(0, len(rows), size):
        yield rows[start_row : start_row + size]


def _csv(path: Path, size: int) -> Iterator[list[dict[str, Any]]]:
    import pandas as pd

    with path.open("rb") as handle:
        if not handle.read(4096).strip():  # blank: pandas would refuse a file without a header
            return
    with pd.read_csv(path, chunksize=size) as reader:
        for frame in reader:
            if len(frame):
                yield frame.astype(object).where(frame.notna(), None).to_dict("records")


def _parquet(path: Path, size: int) -> Iterator[list[dict[str, Any]]]:
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as handle:
        for batch in handle.iter_batches(batch_size=size):
            yield batch.to_pylist()
