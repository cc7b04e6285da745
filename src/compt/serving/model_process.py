"""The model of ``compt serve`` in a process of its own, so that answering HTTP and predicting use two cores.

In one process, the event loop (reading, checking and tokenising requests, writing answers) and the model's
thread take turns on the interpreter lock: every request's work is time the model does not run. Here the
backbone and the bank live in a child process (started with ``spawn``: nothing of the server's event loop,
threads or signal handlers is inherited, and CUDA starts fresh), and the server talks to it over a pipe, read
by the event loop itself (no thread of its own): it sends a batch of prepared rows and awaits their answers.

    model = ModelProcess(run, backbone=None, device="cpu", mask="total")
    facts = await model.start()                              # loads; ModelFacts: tokenizer, device, mode, ...
    answers = await model.predict(("rank", "total"), rows)  # PreparedRow -> compt predict's records
    model.stop()

The child ignores SIGINT and SIGTERM (Ctrl-C reaches the whole process group; the server drains, then stops
the child) and exits when the pipe closes, so a server killed outright leaves no model process behind. A
child that dies fails the batch in flight and every later one with one line, and the server stops
(``on_exit``).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
import traceback
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compt.errors import ComptError, InferenceError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from compt.inference.predictor import PreparedRow

log = logging.getLogger("compt.serve")

#: how long :meth:`ModelProcess.stop` waits for the child to leave before it is killed
STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ModelFacts:
    """What the server needs to know of the loaded model (sent by the child once it is ready)."""

    tokenizer: PreTrainedTokenizerBase
    """the backbone's tokenizer (the server tokenises rows with it)"""
    max_source_length: int
    """input truncation in tokens, as in training"""
    device: str
    """where the model runs"""
    mode: str
    """the run's evaluation mode (``rank`` / ``generate``)"""
    method: str
    """the bank's composition method (masks are checked against it)"""
    n_sources: int
    """the bank's source prompts"""


@dataclass(frozen=True)
class _Failure:
    """A failure sent by the child: its line, and its traceback when it is not a :class:`ComptError` (a bug)."""

    message: str
    trace: str | None = None


class ModelProcess:
    """The model of a run in a child process (see the module's docstring).

    Args:
        run: the run or bank folder.
        backbone: load this backbone instead of the recorded one.
        device: ``cpu``, ``cuda``...; default CUDA when available.
        mask: the server's mask (checked against the bank as the model loads).
        on_exit: called on the event loop, with what later calls raise, if the child dies while serving.
    """

    def __init__(
        self,
        run: Path,
        backbone: str | None,
        device: str | None,
        mask: str,
        on_exit: Callable[[InferenceError], None] = lambda reason: None,
    ) -> None:
        self.args = (str(run), backbone, device, mask)
        self.on_exit = on_exit
        self.process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self._pending: deque[asyncio.Future] = deque()
        self.closed: InferenceError | None = None
        """why the pipe is closed (None while the child serves): what every later call raises"""

    async def start(self) -> ModelFacts:
        """Start the child and wait until it has loaded the model.

        Raises:
            InferenceError: the model could not be loaded (the child's line).
        """
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        self.process = context.Process(
            target=_child, args=(child, *self.args), name="compt-model", daemon=True
        )
        self.process.start()
        child.close()  # the child's end lives in the child: its exit closes the pipe
        self._conn = parent
        asyncio.get_running_loop().add_reader(parent.fileno(), self._on_readable)
        facts = await self._call(None)
        assert isinstance(facts, ModelFacts)
        return facts

    async def predict(self, key: Hashable, rows: Sequence[PreparedRow]) -> list[dict[str, Any]]:
        """One batch: ``key`` = ``(mode, mask)``; a record per row, as ``compt predict``'s (without ``index``).

        Raises:
            InferenceError: the model failed on this batch, or its process is gone.
        """
        return await self._call((key, list(rows)))

    @property
    def pid(self) -> int | None:
        """The child's process id (None before :meth:`start`)."""
        return self.process.pid if self.process is not None else None

    def stop(self) -> None:
        """Close the pipe (the child leaves) and wait for it; killed after :data:`STOP_TIMEOUT_S`."""
        if self._conn is not None:
            self._close(InferenceError("the server stopped before this batch was predicted"))
        if self.process is not None:
            self.process.join(STOP_TIMEOUT_S)
            if self.process.is_alive():
                self.process.kill()
                self.process.join()

    # ------------------------------------------------------------------ the pipe
    async def _call(self, message: Any) -> Any:
        if self.closed is not None:
            raise self.closed
        assert self._conn is not None
        future = asyncio.get_running_loop().create_future()
        self._pending.append(future)
        if message is not None:  # None: the answer to the start (the child sends it unasked)
            try:
                self._conn.send(message)
            except OSError:  # the child died before its end of the pipe was read
                self._lost()
        return await future

    def _on_readable(self) -> None:
        """The event loop's callback: answers in the order the calls were made; end of file = the child left."""
        assert self._conn is not None
        try:
            while self._conn.poll():
                answer = self._conn.recv()
                future = self._pending.popleft()
                if future.done():
                    continue
                if isinstance(answer, _Failure):
                    if answer.trace is not None:  # a bug: its traceback in the server's log
                        log.error(answer.trace)
                    future.set_exception(InferenceError(answer.message))
                else:
                    future.set_result(answer)
        except (EOFError, OSError):
            self._lost()

    def _lost(self) -> None:
        """The child is gone: every call fails with its exit status, and ``on_exit`` is told."""
        assert self.process is not None
        self.process.join(1.0)  # its status (it has closed its end: it is exiting)
        status = self.process.exitcode
        reason = InferenceError(f"the model's process exited (status {status}); restart compt serve")
        self._close(reason)
        self.on_exit(reason)

    def _close(self, reason: InferenceError) -> None:
        assert self._conn is not None
        asyncio.get_running_loop().remove_reader(self._conn.fileno())
        self._conn.close()
        self._conn, self.closed = None, reason
        while self._pending:
            future = self._pending.popleft()
            if not future.done():
                future.set_exception(reason)


# ---------------------------------------------------------------------------------------------- the child
def _child(conn: Connection, run: str, backbone: str | None, device: str | None, mask: str) -> None:
    """The child's life: load, send the facts (or the failure), then answer batches until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        predictor = _load(run, backbone, device, mask)
        cfg = predictor.model.bank.config
        facts = ModelFacts(
            predictor.tokenizer, predictor.max_source_length, str(predictor.device), predictor.mode,
            cfg.method, cfg.n_sources,
        )  # fmt: skip
    except Exception as err:
        conn.send(_failure(err, "the model could not be loaded"))
        return
    conn.send(facts)
    while True:
        try:
            key, rows = conn.recv()
        except (EOFError, OSError):
            return
        try:
            answer: Any = predictor.predict_prepared(rows, *key)
        except Exception as err:
            answer = _failure(err)
        conn.send(answer)


def _load(run: str, backbone: str | None, device: str | None, mask: str) -> Any:
    from compt.inference.predictor import load_for_inference
    from compt.prompts.masks import parse_mask

    predictor = load_for_inference(run, backbone, device)
    parse_mask(mask, predictor.model.bank.config.method, predictor.model.bank.config.n_sources)
    predictor.load_modes()
    return predictor


def _failure(err: Exception, doing: str = "the batch failed") -> _Failure:
    """A :class:`ComptError` is sent as its line; anything else (a bug) says what failed, with its traceback."""
    if isinstance(err, ComptError):
        return _Failure(str(err))
    return _Failure(f"{doing} ({type(err).__name__}: {err})", "".join(traceback.format_exception(err)))
