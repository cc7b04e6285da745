"""A callback the end-to-end tests add from the command line to interrupt a run at a known point:
``+callbacks.kill._target_=tests.interrupt.KillFreshRun`` (``train.py`` runs from the repository root)."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytorch_lightning as pl


class KillFreshRun(pl.Callback):
    """SIGKILL the process at the start of training epoch ``epoch`` of a run that did not resume (so right after
    the previous epoch's checkpoint); a resumed run, started from a checkpoint, trains on."""

    def __init__(self, epoch: int = 1) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if trainer.ckpt_path is None and trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)


class SignalFreshRun(pl.Callback):
    """Send ``signal`` (a name: SIGTERM, SIGUSR1, SIGINT) to this process as training step ``step`` starts, in a
    run that did not resume: the signal arrives mid-step, as a cluster's would."""

    def __init__(self, step: int = 1, signal: str = "SIGTERM") -> None:
        self.step = step
        self.signal = signal

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if trainer.ckpt_path is None and trainer.global_step == self.step:
            os.kill(os.getpid(), signal.Signals[self.signal])
