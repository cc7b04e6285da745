"""Running the real entry points in processes of their own, as a user would (:func:`run_script`)."""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

#: a fast demo run: few steps, few evaluation examples, no checkpoint cadence surprises
FAST = [
    "experiment=demo",
    "optim.epochs=2",
    "eval.max_samples=8",
    "callbacks.checkpoint_every_n_epochs=1",
    "trainer.check_val_every_n_epoch=1",
    "trainer.enable_progress_bar=false",
]

#: set to 1 to start every ``run_script`` process as a fresh interpreter (see :func:`run_script`)
FRESH_ENV = "COMPT_TESTS_FRESH_PYTHON"


def run_script(
    script: str, *args: str, env: dict[str, str] | None = None, check: bool = True, fresh: bool = False
) -> subprocess.CompletedProcess:
    """Run ``python <script> args`` from the repository root; returns the CompletedProcess.

    The process is forked from a warm interpreter (tests/warm_python.py: torch, Lightning, transformers,
    datasets and Hydra imported, the 5-6 s of CPU a fresh one spends first): a process of its own, with this
    argv, environment, folder, output and exit status, whose children (DDP ranks, launcher workers) are fresh
    interpreters. ``fresh=True`` starts a fresh interpreter instead, where the test needs one: runs compared step
    for step with runs of other processes (each fresh process draws its own hash seed; warm ones share theirs),
    launchers that pickle the script's functions (submitit, joblib). So does every run with
    ``COMPT_TESTS_FRESH_PYTHON=1``, and on a machine with CUDA.
    """
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled"}
    # W&B's git capture (a background process) takes ~10 s of a test's CPU here; the runs record git in provenance
    full_env.setdefault("WANDB_DISABLE_GIT", "true")
    full_env.update(env or {})
    argv = [script, *args]
    if fresh or not _warm_python_usable():
        proc = subprocess.run(
            [sys.executable, *argv],
            cwd=REPO_ROOT,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=900,
        )
    else:
        proc = _run_warm(argv, full_env, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{script} {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
    return proc


def read_results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


# ---------------------------------------------------------------------------------------------- warm interpreter
_warm: dict[str, subprocess.Popen] = {}


def _warm_python_usable() -> bool:
    if os.environ.get(FRESH_ENV) == "1" or not hasattr(os, "fork"):
        return False
    import torch

    return not torch.cuda.is_available()


def _warm_python() -> subprocess.Popen:
    """This test process's warm interpreter (started on first use, stopped at exit)."""
    server = _warm.get("server")
    if server is None or server.poll() is not None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled"}
        server = subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "tests" / "warm_python.py")],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        if not _warm:
            atexit.register(_stop_warm_python)
        _warm["server"] = server
    return server


def _stop_warm_python() -> None:
    server = _warm.pop("server", None)
    if server is not None:
        server.stdin.close()  # its loop ends; waiting here counts its CPU (and its children's) in ours
        server.wait(timeout=60)


def _run_warm(argv: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    server = _warm_python()
    with tempfile.TemporaryDirectory(prefix="warm-run-") as folder:
        out, err = Path(folder) / "stdout", Path(folder) / "stderr"
        request = {"argv": argv, "env": env, "cwd": str(REPO_ROOT), "stdout": str(out), "stderr": str(err)}
        server.stdin.write(json.dumps(request) + "\n")
        server.stdin.flush()
        started = server.stdout.readline()
        if not started:
            raise RuntimeError("tests/warm_python.py stopped; run with COMPT_TESTS_FRESH_PYTHON=1 to see why")
        pid, killed = json.loads(started)["pid"], threading.Event()

        def kill() -> None:
            killed.set()
            os.kill(pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            returncode = json.loads(server.stdout.readline())["returncode"]
        finally:
            timer.cancel()
        if killed.is_set():
            raise subprocess.TimeoutExpired([sys.executable, *argv], timeout)
        return subprocess.CompletedProcess(
            [sys.executable, *argv],
            returncode,
            out.read_text(errors="replace"),
            err.read_text(errors="replace"),
        )
