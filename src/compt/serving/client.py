"""A small Python client of ``compt serve`` (the standard library only: nothing to install beside compt).

    from compt.serving import ComptClient
    client = ComptClient("http://127.0.0.1:8000")
    client.wait_ready()
    client.predict({"task": "rte", "sentence1": "A man sleeps.", "sentence2": "A man rests."})
    client.predict([{"task": "sst2", "sentence": "a fine film"}, {"task": "mnli", "premise": "...", "hypothesis": "..."}])

Each client keeps one HTTP/1.1 connection per thread (keep-alive), so one client may be shared by threads.
A refused request raises :class:`~compt.serving.requests.RequestError` with the server's status and line.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode, urlsplit

from compt.errors import InferenceError
from compt.serving.requests import RequestError


class ComptClient:
    """Talks to a ``compt serve`` at ``url``.

    Args:
        url: ``http://HOST:PORT`` of the server.
        timeout: seconds to wait for one answer.
    """

    def __init__(self, url: str = "http://127.0.0.1:8000", timeout: float = 60.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise InferenceError(f"url={url!r}: give http://HOST:PORT of a compt serve")
        self.url = url.rstrip("/")
        self.host, self.port = parts.hostname, parts.port or 80
        self.timeout = timeout
        self._local = threading.local()

    def predict(
        self,
        rows: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        mode: str | None = None,
        mask: str | None = None,
    ) -> Any:
        """Answers to one row (a dict: one answer dict) or a list of rows (a list of answers, in order).

        ``mode`` (``rank`` / ``generate``) and ``mask`` override the server's for this request."""
        query = {k: v for k, v in (("mode", mode), ("mask", mask)) if v is not None}
        path = "/predict" + (f"?{urlencode(query)}" if query else "")
        body = rows if isinstance(rows, Mapping) else list(rows)
        return self._request("POST", path, json.dumps(body).encode())

    def tasks(self) -> dict[str, Any]:
        """``GET /tasks``: the bank's tasks, their input columns and labels."""
        return self._request("GET", "/tasks")

    def health(self) -> dict[str, Any]:
        """``GET /health`` (``{"status": "ready", ...}``; a server still loading raises with status 503)."""
        return self._request("GET", "/health")

    def wait_ready(self, timeout: float = 120.0, interval: float = 0.1) -> dict[str, Any]:
        """Poll ``/health`` until the server is ready (at most ``timeout`` seconds); its health.

        Raises:
            InferenceError: not ready in time, or its model failed to load (the server's line).
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.health()
            except RequestError as err:
                if "failed" in str(err) or time.monotonic() > deadline:
                    raise InferenceError(f"compt serve at {self.url} is not ready: {err}") from None
            except InferenceError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(interval)

    def close(self) -> None:
        """Close this thread's connection."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    # ------------------------------------------------------------------ transport
    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            connection.connect()
            # http.client sends a request's head and body in two writes: without this the body waits for
            # the server's delayed ACK of the head (40 ms a request on Linux)
            connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._local.connection = connection
        return connection

    def _request(self, method: str, path: str, body: bytes | None = None) -> Any:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        for attempt in range(2):  # a kept-alive connection the server has closed is opened again once
            try:
                connection = self._connection()
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                break
            except (http.client.HTTPException, OSError) as err:
                self.close()
                closed = http.client.RemoteDisconnected | BrokenPipeError | ConnectionResetError
                if attempt == 1 or not isinstance(err, closed):
                    raise InferenceError(
                        f"cannot reach compt serve at {self.url} ({type(err).__name__}: {err}); is it running?"
                    ) from None
        try:
            payload = json.loads(data) if data else None
        except json.JSONDecodeError:
            payload = None
        if response.status >= 400:
            message = payload.get("error") if isinstance(payload, dict) else None
            if message is None and isinstance(payload, dict) and "status" in payload:
                message = f"status {payload['status']}" + (
                    f": {payload['error']}" if "error" in payload else ""
                )
            raise RequestError(response.status, message or data.decode(errors="replace")[:500])
        return payload
