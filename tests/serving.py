"""``compt serve`` as a user runs it, for the tests of both backbone families: a real server process on a free
port of 127.0.0.1, the real client, bounded request loops, and ``compt predict``'s answers to compare with."""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from compt.cli import main
from compt.data import bundled_demo_dir
from compt.data.sources import local_file
from compt.serving import ComptClient
from compt.serving.process import ServerProcess
from compt.serving.requests import RequestError
from compt.tasks import get_task
from tests.helpers import REPO_ROOT

TASKS = ["sst2", "rte", "mnli", "stsb"]  # the demo's: 2, 2, 3 and 26 rank candidates


def demo_rows(per_task: int, tasks: list[str] = TASKS) -> list[dict]:
    """``per_task`` bundled demo evaluation rows of each of ``tasks`` (default the demo's) with their ``task``,
    interleaved (sst2, rte, mnli, stsb, sst2, ...) so that every batch mixes tasks."""
    by_task = []
    for task in tasks:
        path = local_file(bundled_demo_dir() / task, get_task(task).eval_split)
        rows = [json.loads(line) for line in path.read_text().splitlines()[:per_task]]
        by_task.append([{"task": task, **row} for row in rows])
    return [row for group in zip(*by_task) for row in group]


class Server(ServerProcess):
    """``compt serve RUN`` on a free port of 127.0.0.1 (``--port 0``), in its own process (and its model's), on one torch thread."""

    def __init__(self, run: Path, log: Path, *options: str) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
        super().__init__(run, "--device", "cpu", *options, log=log, env=env, cwd=REPO_ROOT)

    def raw(self, method: str, path: str, body: bytes | None = None) -> tuple[int, dict]:
        """A request with any body, on a connection of its own: ``(status, JSON answer)``."""
        host, port = self.url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            connection.request(method, path, body=body)
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()


def predicted(run: Path, rows: list[dict], folder: Path, mode: str) -> list[dict]:
    """``compt predict`` of ``rows`` (mixed tasks, no --task) in ``mode``: its output lines."""
    source, out = folder / "rows.jsonl", folder / f"predicted-{mode}.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    argv = ["predict", "--bank", str(run), "--input", str(source), "--output", str(out), "--mode", mode]
    assert main([*argv, "--device", "cpu"]) == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


def served_like_predict(run: Path, server: Server, folder: Path, clients: int) -> dict:
    """A burst of 50 concurrent requests (from ``clients`` threads) of two rows each (two tasks; rank and
    generate in turn) over 24 mixed demo rows: every answer must be ``compt predict``'s for the same row and
    mode. Returns the server's health afterwards."""
    rows = demo_rows(6)
    offline = {mode: predicted(run, rows, folder, mode) for mode in ("rank", "generate")}
    assert server.client.wait_ready(timeout=60)["tasks"] == TASKS

    def send(i: int) -> tuple[str, int, list[dict]]:
        mode, first = ("rank", "generate")[i % 2], (2 * i) % len(rows)
        pair = [rows[first], rows[(first + 1) % len(rows)]]
        return mode, first, server.client.predict(pair, mode=mode)

    with ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(send, range(50)))
    assert len(answers) == 50
    for mode, first, pair in answers:
        expected = [offline[mode][(first + j) % len(rows)] for j in range(2)]
        assert pair == [{**e, "index": j} for j, e in enumerate(expected)], (mode, first)
    health = server.client.health()
    assert (
        health["mixed_batches"] >= 1 and health["batches"] < health["rows"]
    )  # rows of several tasks batched
    return health


def bad_requests_get_one_line(server: Server, good: dict, answer: dict) -> None:
    """Each bad request gets its 4xx and one line; ``good`` is answered ``answer`` after each. The server runs
    with ``--max-body-bytes 65536 --max-input-tokens 128``."""
    long_row = json.dumps({"task": "sst2", "sentence": "word " * 300}).encode()
    row = json.dumps(good).encode()
    cases = [
        (
            "POST",
            "/predict",
            b'{"task": "cola", "sentence": "x"}',
            422,
            "its tasks are: sst2, rte, mnli, stsb",
        ),
        (
            "POST",
            "/predict",
            b'{"task": "rte", "sentence1": "x", "sentence2": null}',
            422,
            "'sentence2' has no",
        ),
        ("POST", "/predict", b'{"task": "rte", "sentence1": "x"}', 422, "'sentence2' has no text"),
        ("POST", "/predict", b'[{"task": "sst2"', 400, "not JSON"),
        ("POST", "/predict", b"x" * 70000, 413, "larger than 65536 bytes"),
        ("POST", "/predict", long_row, 422, "longer than 128 tokens"),
        ("POST", "/predict?mode=beam", row, 422, "mode='beam'"),
        ("POST", "/predict?mask=src9", row, 422, "src9"),
        ("GET", "/predict", None, 405, "Method Not Allowed"),
        ("GET", "/nowhere", None, 404, "Not Found"),
    ]
    for method, path, body, status, phrase in cases:
        got, payload = server.raw(method, path, body)
        assert got == status and phrase in payload["error"], (path, body and body[:60], payload)
        assert "\n" not in payload["error"]
        assert server.client.predict(good) == answer  # still answering
    try:
        server.client.predict([good, {"task": "qnli", "question": "?", "sentence": "."}])
    except RequestError as refused:
        assert refused.status == 422 and "which this bank lacks" in str(refused)
    else:
        raise AssertionError("a row of a task the bank lacks was answered")


def sigterm_drains(server: Server, rows: list[dict], answers: list[dict]) -> None:
    """Six requests wait in the server for their batch (it waits up to ``--max-wait-ms`` for 50 rows); SIGTERM
    then: each gets its answer, and the server exits 0."""
    results: dict[int, object] = {}

    def send(i: int) -> None:
        try:
            results[i] = ComptClient(server.url, timeout=60).predict(rows[i])
        except Exception as err:  # recorded: the assertion below names it
            results[i] = err

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(rows))]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    while (health := server.client.health())["in_flight"] < len(rows):
        assert time.monotonic() < deadline, "the requests never arrived"
        time.sleep(0.02)
    server.client.close()
    assert server.stop() == 0
    for thread in threads:
        thread.join(timeout=60)
    assert [results[i] for i in range(len(rows))] == answers
    assert "compt: stopped by SIGTERM after answering" in server.log.read_text()
    assert not is_running(health["model_pid"])  # the model's process left with the server


def is_running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False
