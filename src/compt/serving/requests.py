"""What ``compt serve`` accepts in a ``POST /predict`` body, and the one-line error for what it refuses.

A body is one row (a JSON object: ``{"task": "rte", "sentence1": "...", "sentence2": "..."}``, the task's hub
columns) or a JSON list of rows. Each row is checked as ``compt predict`` checks its input
(:class:`~compt.inference.rows.RowCheck`: a known task, text in every input column of it), so a request is
answered whole or refused whole, with the status and one line that names the rows. Nothing here imports torch
or a web framework.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from compt.errors import ComptError
from compt.inference.rows import RowCheck
from compt.tasks import TaskSpec

#: HTTP statuses of refused requests
BAD_REQUEST, TOO_LARGE, UNPROCESSABLE = 400, 413, 422


class RequestError(ComptError):
    """A request the server refuses: ``status`` (4xx) and a one-line message naming the fix."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RequestRows:
    """The rows of an accepted body, and whether it was one row (answered by one object) or a list."""

    rows: list[dict[str, Any]]
    single: bool


def parse_body(body: bytes, tasks: Sequence[TaskSpec]) -> RequestRows:
    """The rows of a ``POST /predict`` body, checked against the bank's ``tasks``.

    Raises:
        RequestError: 400 when the body is not a JSON object or list of objects (or not UTF-8); 422 when a
            row's task is missing or not the bank's, or it lacks text in an input column of its task.
    """
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise RequestError(BAD_REQUEST, f"the body is not UTF-8 ({err.reason}); send JSON in UTF-8") from None
    except json.JSONDecodeError as err:
        raise RequestError(
            BAD_REQUEST,
            f"the body is not JSON ({err.msg} at line {err.lineno} column {err.colno}); send one row "
            '{"task": ..., <its columns>} or a list of rows',
        ) from None
    single = isinstance(data, dict)
    rows = [data] if single else data
    if not isinstance(rows, list):
        raise RequestError(
            BAD_REQUEST,
            f"the body is a JSON {type(data).__name__}; send one row (an object) or a list of rows",
        )
    if not rows:
        raise RequestError(UNPROCESSABLE, "the body is an empty list: send at least one row")
    others = [i for i, row in enumerate(rows) if not isinstance(row, dict)]
    if others:
        raise RequestError(
            BAD_REQUEST,
            f'rows must be JSON objects ({{"task": ..., <its columns>}}); row(s) {", ".join(map(str, others[:5]))}'
            f"{', ...' if len(others) > 5 else ''} are not (numbered from 0)",
        )
    check = RowCheck(tasks, no_task='give each row its "task"')
    check.add(rows)
    problems, _ = check.report()
    if problems:
        raise RequestError(UNPROCESSABLE, f"{'; '.join(problems)}; nothing was predicted")
    return RequestRows(rows, single)


def too_long(
    lengths: Sequence[int], tasks: Sequence[str], limits: Sequence[int], cuts: Sequence[int]
) -> RequestError | None:
    """The refusal of rows longer than their ``limits`` in tokens (``lengths`` counted up to beyond them), or
    None.

    Rows up to their limit are cut to their ``cuts`` tokens (their task's input limit), as in training and
    ``compt predict``; a row far over that would be answered from a small part of its text."""
    over = [i for i, n in enumerate(lengths) if n > limits[i]]
    if not over:
        return None
    groups: dict[tuple[int, int], list[int]] = {}
    for i in over:
        groups.setdefault((limits[i], cuts[i]), []).append(i)
    said = []
    for (limit, cut), rows in groups.items():
        shown = ", ".join(f"{i} ({tasks[i]})" for i in rows[:5]) + (", ..." if len(rows) > 5 else "")
        said.append(
            f"{len(rows)} row(s) longer than {limit} tokens: {shown} (numbered from 0; their task reads {cut} "
            "tokens of an input, longer ones are cut)"
        )
    return RequestError(
        UNPROCESSABLE,
        f"{'; '.join(said)}; this server refuses inputs that far over (--max-input-tokens): shorten them; "
        "nothing was predicted",
    )
