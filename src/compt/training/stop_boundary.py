"""The Lightning side of stopping a job (:mod:`compt.runtime.stopping`): a stop signal is acted on at the next
step boundary, after ``last.ckpt`` is written there; a lost claim stops the run before it writes anything."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.trainer.states import TrainerFn

from compt.errors import ClaimLost
from compt.runtime.stopping import CLAIM_LOST, NOTHING, StopRequest
from compt.training.callbacks import LastCheckpoint, agreed_stop
from compt.training.loggers import ResumableCSVLogger


class StopAtStepBoundary(pl.Callback):
    """Stops a run that was asked to stop (:class:`~compt.runtime.stopping.StopRequest`) at the next point
    where it can be resumed exactly, with ``last.ckpt`` written there (put it after every other callback: the
    checkpoint holds their state).

    - a training step ends (its optimizer step done and its log row written): ``last.ckpt`` is written
      mid-epoch (:class:`~compt.training.callbacks.ResumeState` resumes the epoch's data stream after it);
      the last step of an epoch waits for the epoch's end (its validation, then the checkpoint), and a step
      that only accumulates gradients for the next optimizer step waits for that step;
    - the test phase, a validation outside training, or the sanity check: stop at the next batch; the last
      checkpoint (at the end of training, or none) is kept and the relaunch re-does that phase.

    Lightning installs its own SIGTERM handler whenever a trainer starts (it raises ``SystemExit`` mid-epoch
    and saves nothing); the job's handler is put back at the start of each phase.
    """

    def __init__(self, stop: StopRequest, checkpoint: LastCheckpoint) -> None:
        self.stop = stop
        self.checkpoint = checkpoint

    # ------------------------------------------------------------------ the signals are the job's
    def on_sanity_check_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.stop.reclaim()

    def on_validation_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.stop.reclaim()

    def on_test_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.stop.reclaim()

    def on_train_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.stop.reclaim()
        self._stop_unsaved(trainer, "before training (re)started")

    # ------------------------------------------------------------------ training
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._agreed(trainer) == NOTHING:
            return
        progress = trainer.fit_loop.epoch_loop.batch_progress
        done, per_epoch = progress.current.ready, trainer.num_training_batches
        accumulating = trainer.accumulate_grad_batches > 1 and done % trainer.accumulate_grad_batches != 0
        if progress.is_last_batch or done >= per_epoch or accumulating:
            return  # the epoch's end (validation, then the checkpoint) or the optimizer step comes first
        # Lightning logs this step's row after this hook; log it now, so that the checkpoint counts it
        trainer._logger_connector.update_train_step_metrics()
        self.checkpoint.save(trainer)
        raise self.stop.interrupted(
            f"after step {trainer.global_step} (epoch {trainer.current_epoch + 1}, batch {done} of {per_epoch}); "
            f"saved {self.checkpoint.path}"
        )

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if self._agreed(trainer) == NOTHING:
            return
        self.checkpoint.save(trainer)
        raise self.stop.interrupted(
            f"at the end of epoch {trainer.current_epoch + 1} (step {trainer.global_step}); saved "
            f"{self.checkpoint.path}"
        )

    # ------------------------------------------------------------------ evaluation
    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: Any,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            return  # the epoch's validation finishes: the checkpoint at the epoch's end needs it
        when = (
            "before training (re)started"
            if trainer.sanity_checking
            else "while validating the trained prompts"
        )
        self._stop_unsaved(trainer, when)

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: Any,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._stop_unsaved(trainer, "while testing the trained prompts")

    def on_exception(self, trainer: pl.Trainer, pl_module: Any, exception: BaseException) -> None:
        if isinstance(exception, ClaimLost):  # Lightning saves the loggers next: not into another's folder
            for logger in trainer.loggers:
                if isinstance(logger, ResumableCSVLogger):
                    logger.stop_writing()

    # ------------------------------------------------------------------ helpers
    def _agreed(self, trainer: pl.Trainer) -> int:
        code = agreed_stop(trainer, self.stop)
        if code == CLAIM_LOST:
            raise self.stop.claim_lost_error()
        return code

    def _stop_unsaved(self, trainer: pl.Trainer, when: str) -> None:
        """Stop where no new checkpoint is needed: the last one is where a relaunch starts."""
        if self._agreed(trainer) != NOTHING:
            kept = self.stop.kept_checkpoint(self.checkpoint.path)
            raise self.stop.interrupted(f"{when}; {kept} (the relaunch continues from it)")
