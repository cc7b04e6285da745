"""``compt serve`` started from Python: a process of its own on a free port, waited for until it serves.

    from compt.serving.process import ServerProcess
    with ServerProcess("multirun/demo/k=8,method=ssum,seed=1", "--device", "cpu", log="serve.log") as server:
        server.client.predict({"task": "rte", "sentence1": "A man sleeps.", "sentence2": "A man rests."})

For notebooks, scripts, benchmarks and tests; a deployment runs ``compt serve`` itself. Nothing here imports
torch.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from compt.errors import InferenceError
from compt.serving.client import ComptClient

#: the line ``compt serve`` prints on stderr once it answers (its URL follows " on ")
SERVING_LINE = "compt: serving"


class ServerProcess:
    """``compt serve RUN OPTIONS...`` in a process of its own, on a free port (``--port 0``): started and waited
    for (``url``, and ``client``: a :class:`ComptClient`), stopped by :meth:`stop` (SIGTERM: the server answers
    the requests in flight and exits 0).

    Args:
        run: the run (or bank) folder.
        options: more ``compt serve`` options (``--device cpu``, ``--max-batch-size 64``, ...).
        log: where the server's stderr goes (read for its URL).
        env: the server's environment (default: this process's).
        cwd: its working folder.
        start_timeout: seconds to wait for it to serve.
        timeout: the client's seconds to wait for one answer.

    Raises:
        InferenceError: the server exited or did not serve in time (the message ends with its log's last lines).
    """

    def __init__(
        self,
        run: str | Path,
        *options: str,
        log: str | Path,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        start_timeout: float = 120.0,
        timeout: float = 60.0,
    ) -> None:
        argv = [sys.executable, "-m", "compt.cli", "serve", str(run), "--port", "0", *options]
        self.log = Path(log)
        with self.log.open("w") as handle:
            self.proc = subprocess.Popen(
                argv, cwd=cwd, env=dict(env or os.environ), stdout=subprocess.DEVNULL, stderr=handle
            )
        deadline = time.monotonic() + start_timeout
        while SERVING_LINE not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                raise InferenceError(f"compt serve did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.05)
        line = next(x for x in self.log.read_text().splitlines() if SERVING_LINE in x)
        self.url = line.split(" on ")[1].split()[0]
        self.client = ComptClient(self.url, timeout=timeout)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then the server's exit code (killed after ``timeout`` seconds: nothing is left running)."""
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
