"""Running the real entry points in subprocesses, as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


def run_script(script: str, *args: str, env: dict[str, str] | None = None, check: bool = True):
    """Run ``python <script> args`` from the repository root; returns the CompletedProcess."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled"}
    # W&B's git capture (a background process) takes ~10 s of a test's CPU here; the runs record git in provenance
    full_env.setdefault("WANDB_DISABLE_GIT", "true")
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, script, *args],
        cwd=REPO_ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{script} {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
    return proc


def read_results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())
