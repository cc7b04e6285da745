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
from compt.data.validate import RowTextCheck
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


def check_input(path: str | Path, task: TaskSpec) -> int:
    """Read the whole input once, in chunks, before anything is predicted: every row must parse and have text
    in each input column of ``task`` (one line naming the rows otherwise; blank text is a warning).

    Returns:
        The number of rows.
    """
    check = RowTextCheck(task)
    for chunk in row_chunks(path):
        check.add(chunk)
    if check.rows == 0:
        raise InferenceError(f"input file {path} holds no rows")
    report(check, str(path))
    return check.rows


def check_rows(task: TaskSpec, rows: Sequence[Mapping[str, Any]], origin: str) -> None:
    """Refuse rows without text in an input column of ``task`` (one line naming them); warn about blank
    text."""
    check = RowTextCheck(task)
    check.add(rows)
    report(check, origin)


def report(check: RowTextCheck, origin: str) -> None:
    """Raise the problems :class:`RowTextCheck` found as one line (nothing is predicted); log its warnings."""
    problems, warnings = check.report()
    if problems:
        raise InferenceError(
            f"{origin}: {'; '.join(problems)}; task {check.task.name!r} reads {list(check.task.input_columns)}. "
            "Fix or drop these rows: nothing was predicted"
        )
    for warning in warnings:
        log.warning("compt: warning: %s: %s", origin, warning)


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
