"""``compt serve RUN_DIR``: every task of a trained bank from one frozen backbone, over HTTP.

Built on FastAPI and uvicorn (``pip install -e ".[serve]"``). The backbone and the bank load once, in a
process of their own (:class:`~compt.serving.model_process.ModelProcess`), and every prediction runs there; the
server's event loop reads requests, checks and tokenises their rows and hands them to a :class:`MicroBatcher`,
which puts rows that arrive together into one batch whatever their task (each row gets its task's prompt, as
in training) — up to ``max_batch_size`` rows, waiting at most ``max_wait_ms`` for them — and sends each batch
to the model's process: requests are read and answered while the model computes.

Routes:

- ``POST /predict``: one row (``{"task": "rte", "sentence1": "...", "sentence2": "..."}``) or a list of rows;
  each answer has the fields of a ``compt predict`` output line (``index`` = the row's place in the request).
  ``?mode=rank|generate`` and ``?mask=...`` override the server's for one request.
- ``GET /health``: 200 ``{"status": "ready", ...}`` once the model is loaded, 503 ``{"status": "loading"}``
  before.
- ``GET /tasks``: the bank's tasks, the columns each reads and its labels.

A bad request gets a 4xx and one line (``{"error": "..."}``) and changes nothing for the others. SIGTERM (or
Ctrl-C) stops taking connections, answers the requests in flight and exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
import traceback
from collections.abc import AsyncIterator, Callable, Hashable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from compt.errors import ComptError, ConfigError, InferenceError
from compt.evaluation.config import EVAL_MODES
from compt.inference.predictor import PreparedRow, RowEncoder, recorded
from compt.inference.rows import TASK_COLUMN
from compt.models.tokenization import encode_targets
from compt.prompts.masks import parse_mask
from compt.serving.batching import MicroBatcher, QueueFull, Shape
from compt.serving.model_process import ModelFacts, ModelProcess
from compt.serving.requests import TOO_LARGE, UNPROCESSABLE, RequestError, parse_body, too_long
from compt.tasks import TaskSpec

log = logging.getLogger("compt.serve")

#: how long SIGTERM waits for the requests in flight before it cancels them
DRAIN_TIMEOUT_S = 30
#: a row is refused beyond this many times its task's input limit (max_source_length) by default
INPUT_LENGTH_FACTOR = 4
#: the largest body taken by default (bytes)
MAX_BODY_BYTES = 1 << 20
#: task kinds ranked over candidates of their own (label words, a score grid), not the row's
FIXED_CANDIDATES = ("classification", "regression")
#: statuses of the server itself
UNAVAILABLE, SERVER_ERROR = 503, 500


@dataclass(frozen=True)
class ServeSettings:
    """What ``compt serve`` was asked (its command-line options)."""

    run: Path
    host: str = "127.0.0.1"
    port: int = 8000
    device: str | None = None
    mode: str | None = None
    """default: the run's ``eval.mode`` (rank without a run config)"""
    mask: str = "total"
    max_batch_size: int = 32
    max_wait_ms: float = 5.0
    max_body_bytes: int = MAX_BODY_BYTES
    max_input_tokens: int | None = None
    """default: :data:`INPUT_LENGTH_FACTOR` × the input limit of the row's task (its ``max_source_length``, else
    the run's)"""
    backbone: str | None = None

    def check(self) -> None:
        """Refuse settings that cannot work (one line naming the option)."""
        if self.max_batch_size < 1:
            raise ConfigError(f"--max-batch-size {self.max_batch_size}: give at least 1")
        if self.max_wait_ms < 0:
            raise ConfigError(f"--max-wait-ms {self.max_wait_ms}: give 0 or more")
        if self.max_body_bytes < 1:
            raise ConfigError(f"--max-body-bytes {self.max_body_bytes}: give at least 1")
        if self.max_input_tokens is not None and self.max_input_tokens < 1:
            raise ConfigError(f"--max-input-tokens {self.max_input_tokens}: give at least 1")
        if self.mode is not None and self.mode not in EVAL_MODES:
            raise ConfigError(f"--mode {self.mode}: choose one of {', '.join(EVAL_MODES)}")
        if not 0 <= self.port < 65536:
            raise ConfigError(f"--port {self.port}: give a port number from 0 to 65535")


class Service:
    """The bank behind the routes: its tasks (read at once), the model (loaded in the background), the batcher.

    Args:
        settings: the server's options.
        on_failure: called (on the event loop) when the model cannot be loaded: the server stops.
    """

    def __init__(self, settings: ServeSettings, on_failure: Callable[[], None] = lambda: None) -> None:
        settings.check()
        self.settings = settings
        record = recorded(settings.run)  # the run's tasks and backbone: a wrong folder fails before binding
        self.tasks: list[TaskSpec] = record.tasks
        self.backbone = settings.backbone or record.backbone
        self.status = "loading"
        self.failure: BaseException | None = None
        self.on_failure = on_failure
        self.model: ModelProcess | None = None
        self.facts: ModelFacts | None = None
        """the loaded model's tokenizer, device, mode and bank (None while loading)"""
        self.encoder: RowEncoder | None = None
        self.requests = 0
        """requests answered"""
        self.in_flight = 0
        """requests being answered now"""
        self.mixed_batches = 0
        """batches that held rows of several tasks"""
        self.candidates: dict[int, tuple[int, int]] = {}
        """each task's fixed rank candidates: (how many, tokens of the longest); none for per-row choices"""
        self.batcher = MicroBatcher(
            self._run_batch, settings.max_batch_size, settings.max_wait_ms / 1000, shape=self._shape
        )
        self._loading: asyncio.Task | None = None

    # ------------------------------------------------------------------ life
    async def start(self) -> None:
        """Start the batching loop and load the model in the background (``/health`` says when it is ready)."""
        self.batcher.start()
        self._loading = asyncio.get_running_loop().create_task(self._load())

    async def stop(self) -> None:
        """Stop the batcher (the server has answered every request in flight) and the model's process."""
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
        await self.batcher.stop()
        if self.model is not None:
            self.model.stop()

    async def _load(self) -> None:
        settings = self.settings
        self.model = ModelProcess(
            settings.run, settings.backbone, settings.device, settings.mask, on_exit=self._model_exited
        )
        try:
            facts = await self.model.start()
        except Exception as err:
            self.status, self.failure = "failed", err
            if not isinstance(err, ComptError):  # a bug of the server's (the model's process logs its own)
                log.error("".join(traceback.format_exception(err)))
            self.on_failure()
            return
        self.facts = facts
        tokenizer = facts.tokenizer
        self.encoder = RowEncoder(tokenizer, self.tasks, facts.max_source_length)
        for task_id, task in enumerate(self.tasks):
            fixed = encode_targets(tokenizer, task.candidates()) if task.kind in FIXED_CANDIDATES else []
            self.candidates[task_id] = (len(fixed), max(map(len, fixed), default=0))
        self.status = "ready"
        url = f"http://{self.settings.host}:{self.settings.port}"
        print(
            f"compt: serving {len(self.tasks)} tasks ({', '.join(self.task_names)}) of {self.settings.run} on "
            f"{url} — {facts.device}, mode {self.mode}, mask {self.settings.mask}; POST {url}/predict",
            file=sys.stderr,
            flush=True,
        )

    def _model_exited(self, reason: InferenceError) -> None:
        """The model's process died while serving: every later request is refused, and the server stops."""
        self.status, self.failure = "failed", reason
        self.on_failure()

    # ------------------------------------------------------------------ facts
    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    @property
    def mode(self) -> str:
        """The default prediction mode: ``--mode``, else the run's."""
        return self.settings.mode or (self.facts.mode if self.facts else "rank")

    def max_input_tokens(self, task: TaskSpec) -> int:
        """The longest input of ``task`` taken: ``--max-input-tokens``, else a multiple of its input limit."""
        assert self.encoder is not None
        return self.settings.max_input_tokens or INPUT_LENGTH_FACTOR * self.encoder.limit(task)

    def health(self) -> tuple[int, dict[str, Any]]:
        """``/health``: 200 when ready, 503 while loading (or when loading failed)."""
        body: dict[str, Any] = {"status": self.status}
        if self.status == "ready":
            assert self.facts is not None
            body |= {
                "tasks": self.task_names,
                "backbone": self.backbone,
                "device": self.facts.device,
                "mode": self.mode,
                "mask": self.settings.mask,
                "max_batch_size": self.settings.max_batch_size,
                "max_wait_ms": self.settings.max_wait_ms,
                "requests": self.requests,
                "in_flight": self.in_flight,
                "batches": self.batcher.batches,
                "mixed_batches": self.mixed_batches,
                "rows": self.batcher.items,
                "model_busy_s": round(self.batcher.busy_s, 3),
                "model_pid": self.model.pid if self.model else None,
            }
        elif self.failure is not None:
            body["error"] = str(self.failure)
        return (200 if self.status == "ready" else UNAVAILABLE), body

    def task_table(self) -> dict[str, Any]:
        """``/tasks``: each task's kind (:attr:`TaskSpec.kind`), input columns and labels (``labels`` null for
        regression, with its ``range``; null for a task with per-row choices, with the ``choices`` column(s)
        each row carries them in, and for a task answered by text)."""
        tasks = []
        for task in self.tasks:
            entry: dict[str, Any] = {
                "name": task.name,
                "kind": task.kind,
                "input_columns": list(task.input_columns),
                "labels": list(task.label_words) if task.label_words is not None else None,
            }
            if task.is_regression:
                entry["range"] = list(task.regression_range)
            if task.choices:
                entry["choices"] = list(task.choices)
            tasks.append(entry)
        return {"tasks": tasks, "task_column": TASK_COLUMN, "mode": self.mode, "mask": self.settings.mask}

    # ------------------------------------------------------------------ predictions
    async def predict(self, body: bytes, mode: str | None, mask: str | None) -> Any:
        """Answer a ``POST /predict`` body: one answer object for one row, a list for a list.

        Raises:
            RequestError: what the request gets instead (4xx; 503 while loading or when the queue is full).
        """
        if self.status != "ready":
            raise RequestError(UNAVAILABLE, f"the model is {self.status}; retry when GET /health says ready")
        self.in_flight += 1
        try:
            answers = await self._answer(body, mode, mask)
        finally:
            self.in_flight -= 1
        self.requests += 1
        return answers

    async def _answer(self, body: bytes, mode: str | None, mask: str | None) -> Any:
        assert self.encoder is not None
        key = self._key(mode, mask)
        request = parse_body(body, self.tasks)
        if len(request.rows) > self.batcher.max_waiting:
            raise RequestError(
                TOO_LARGE, f"{len(request.rows)} rows in one request; send at most {self.batcher.max_waiting}"
            )
        names = [row[TASK_COLUMN] for row in request.rows]
        limits = {spec.name: self.max_input_tokens(spec) for spec in self.tasks if spec.name in names}
        prepared = self.encoder.prepare(request.rows, names)
        refusal = too_long(
            [r.length for r in prepared],
            names,
            [limits[name] for name in names],
            [self.encoder.limit(r.task) for r in prepared],
        )
        if refusal is not None:
            raise refusal
        try:
            records = await self.batcher.submit(key, prepared)
        except QueueFull as err:
            raise RequestError(UNAVAILABLE, f"the server is busy ({err}); retry later") from None
        except ComptError as err:  # the model failed on the batch (a bug's traceback is in the log) or died
            raise RequestError(SERVER_ERROR, str(err)) from None
        answers = [{"index": i, **record} for i, record in enumerate(records)]
        return answers[0] if request.single else answers

    def _key(self, mode: str | None, mask: str | None) -> tuple[str, str]:
        """The batch key of a request: its prediction mode and mask (checked against the bank)."""
        mode = mode or self.mode
        mask = mask or self.settings.mask
        if mode not in EVAL_MODES:
            raise RequestError(UNPROCESSABLE, f"mode={mode!r}; choose one of {', '.join(EVAL_MODES)}")
        assert self.facts is not None
        try:
            parse_mask(mask, self.facts.method, self.facts.n_sources)
        except ConfigError as err:
            raise RequestError(UNPROCESSABLE, str(err)) from None
        return mode, mask

    def _shape(self, row: PreparedRow) -> Shape:
        """A row's padded dimensions for the batcher: input tokens, rank candidates, the longest's tokens."""
        if row.choice_ids is not None:
            return len(row.input_ids), len(row.choice_ids), max(map(len, row.choice_ids), default=0)
        return len(row.input_ids), *self.candidates[row.task_id]

    async def _run_batch(self, key: Hashable, rows: list[PreparedRow]) -> list[dict[str, Any]]:
        """One batch in the model's process (rows of any tasks, one backbone pass)."""
        assert self.model is not None
        answers = await self.model.predict(key, rows)
        self.mixed_batches += len({row.task_id for row in rows}) > 1
        return answers


#: ``POST /predict``'s query parameters, as the OpenAPI documentation (``/docs``) shows them
QUERY_PARAMETERS = [
    {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": description,
    }
    for name, description in (
        ("mode", "rank or generate (default: the server's --mode)"),
        ("mask", "a prompt mask, e.g. private or src0 (default: the server's --mask)"),
    )
]


def build_app(service: Service) -> FastAPI:
    """The FastAPI application of ``service``: its routes, and errors as ``{"error": "one line"}``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        yield
        await service.stop()

    app = FastAPI(title="compt", summary="a trained ComPT prompt bank's tasks", lifespan=lifespan)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(RequestError)
    async def refused(request: Request, err: RequestError) -> JSONResponse:
        return error(err.status, str(err))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        return error(err.status_code, f"{request.method} {request.url.path}: {err.detail}")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        return error(UNPROCESSABLE, problems)

    @app.exception_handler(Exception)
    async def bug(request: Request, err: Exception) -> JSONResponse:
        log.error("".join(traceback.format_exception(err)))
        return error(SERVER_ERROR, f"internal error ({type(err).__name__}: {err}); the server goes on")

    @app.post("/predict", openapi_extra={"parameters": QUERY_PARAMETERS})
    async def predict(request: Request) -> JSONResponse:
        # the query read here rather than declared as parameters: FastAPI's validation of two optional
        # strings was a tenth of a request's time on the event loop (the documentation lists them still)
        query = request.query_params
        body = await read_body(request, service.settings.max_body_bytes)
        # a response of our own: FastAPI's encoder would walk every answer again (plain JSON already)
        return JSONResponse(await service.predict(body, query.get("mode"), query.get("mask")))

    @app.get("/health")
    async def health() -> JSONResponse:
        status, body = service.health()
        return JSONResponse(body, status_code=status)

    @app.get("/tasks")
    async def tasks() -> dict[str, Any]:
        return service.task_table()

    return app


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, refused (413) past ``limit`` bytes, whether its length is declared or not."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(TOO_LARGE, body_too_large(int(declared), limit))
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(TOO_LARGE, body_too_large(size, limit))
        chunks.append(chunk)
    return b"".join(chunks)


def body_too_large(size: int, limit: int) -> str:
    return f"the body is larger than {limit} bytes ({size}+); send fewer rows per request (--max-body-bytes)"


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one), or one line saying why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named: asyncio turns Nagle's algorithm off only on sockets that say they are TCP, and a
    # response written in two parts (head, body) would otherwise wait for the client's delayed ACK (40 ms)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise InferenceError(
            f"cannot listen on {host}:{port} ({err.strerror or err}); pass another --port (or --host)"
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(settings: ServeSettings) -> int:
    """Run the server until SIGTERM or Ctrl-C (then drain the requests in flight and return 0).

    Raises:
        InferenceError: the run folder, the address or the model (one line; the server stops).
    """
    import uvicorn

    settings.check()
    recorded(settings.run)  # a folder that is not a run is refused before the address is taken
    sock = listen(settings.host, settings.port)
    settings = ServeSettings(**{**settings.__dict__, "port": sock.getsockname()[1]})
    server: uvicorn.Server | None = None

    def stop_on_failure() -> None:
        if server is not None:
            server.should_exit = True

    service = Service(settings, on_failure=stop_on_failure)
    config = uvicorn.Config(
        build_app(service),
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=DRAIN_TIMEOUT_S,
        lifespan="on",
        # uvloop's event loop and the httptools parser (both C, in the [serve] extra) when installed, else
        # asyncio's and h11: a third less of the event loop's time per request
        loop="auto",
        http="auto",
    )
    server = uvicorn.Server(config)
    stopped_by: list[int] = []
    with quiet_stop(stopped_by):
        server.run(sockets=[sock])
    if service.failure is not None:
        if isinstance(service.failure, ComptError):
            raise service.failure
        raise InferenceError(
            f"the model could not be loaded ({type(service.failure).__name__}: {service.failure})"
        )
    why = signal.Signals(stopped_by[0]).name if stopped_by else "its end"
    print(
        f"compt: stopped by {why} after answering {service.requests} requests "
        f"({service.batcher.items} rows in {service.batcher.batches} batches)",
        file=sys.stderr,
    )
    return 0


@contextmanager
def quiet_stop(caught: list[int]) -> Iterator[None]:
    """While uvicorn serves, SIGTERM and SIGINT are its own (it drains); afterwards it hands the signal it
    caught back to the handler it found, which would end the process the default way (143). The handlers
    installed here only note the signal in ``caught``, so that a drained server exits 0 with one line saying
    why it stopped."""

    def note(sig: int, frame: Any) -> None:
        caught.append(sig)

    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
