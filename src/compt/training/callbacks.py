"""Small callbacks: training curves kept for results.json without a host sync per step; the resume checkpoint
``last.ckpt`` written at epoch ends; RNG state and the CSV log's length in it, so a resumed run continues the
same random stream and its log holds every step once; the last validation's metrics. Plus the extra Lightning
callbacks a user adds from the command line (``+callbacks=early_stopping``)."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.data import _set_sampler_epoch
from omegaconf import DictConfig
from pytorch_lightning.utilities import rank_zero_warn
from torch.distributed import ReduceOp

from compt.atomic import NO_ROOM
from compt.config.targets import instantiate_target, target_entries
from compt.errors import ComptError
from compt.runtime.stopping import CLAIM_LOST, StopRequest
from compt.training.loggers import ResumableCSVLogger

#: checkpoint key: rows of ``metrics.csv`` when the checkpoint was written
LOG_ROWS_KEY = "compt_log_rows"
#: checkpoint key: training batches of the current epoch already done (a checkpoint written mid-epoch)
EPOCH_BATCHES_KEY = "compt_epoch_batches"


class CurveRecorder(pl.Callback):
    """Mean training loss per epoch, for the report's plots (the module keeps the validation curve).

    Losses stay on the device during an epoch and are read once at its end.
    """

    def __init__(self) -> None:
        self.epoch_losses: list[torch.Tensor] = []
        self.train_loss: list[tuple[int, float]] = []

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None:
            self.epoch_losses.append(loss.detach())

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if self.epoch_losses:
            device = self.epoch_losses[
                -1
            ].device  # losses restored from a mid-epoch checkpoint are on the CPU
            losses = torch.stack([loss.to(device) for loss in self.epoch_losses])
            self.train_loss.append((trainer.global_step, losses.mean().item()))
        self.epoch_losses = []

    def state_dict(self) -> dict[str, Any]:
        # the losses of the epoch so far: a checkpoint written mid-epoch (a stop signal) resumes the epoch
        partial = torch.stack(self.epoch_losses).cpu() if self.epoch_losses else torch.zeros(0)
        return {"train_loss": [list(p) for p in self.train_loss], "epoch_losses": partial}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.train_loss = [tuple(p) for p in state_dict.get("train_loss", [])]
        self.epoch_losses = list(state_dict.get("epoch_losses", torch.zeros(0)).unbind())


class ValidationRecord(pl.Callback):
    """The metrics of the last validation (``val/...``, as logged) and the step it ran at, for results.json
    and the objective of a hyperparameter search (``optimized_metric``)."""

    def __init__(self) -> None:
        self.global_step: int | None = None
        self.metrics: dict[str, float] = {}

    def on_validation_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        self.global_step = trainer.global_step
        self.metrics = {
            name: float(value) for name, value in trainer.callback_metrics.items() if name.startswith("val/")
        }

    def is_current(self, trainer: pl.Trainer) -> bool:
        """Whether the last validation saw the final model (it ran at the current step)."""
        return self.global_step == trainer.global_step


class BestBank(pl.Callback):
    """``callbacks.restore_best=true``: keeps the prompt bank's weights of the best validation (highest
    ``val/avg`` on the development split, the final model's included) so that the run tests that model instead
    of the last one. The weights (a few MB at most) live in memory and in ``last.ckpt``, so a resumed run keeps
    its best."""

    def __init__(self, monitor: str = "val/avg") -> None:
        self.monitor = monitor
        self.score: float | None = None
        self.global_step: int | None = None
        self.weights: dict[str, torch.Tensor] | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None:
            return
        score = float(value)
        if score == score and (self.score is None or score > self.score):  # NaN never wins
            self.score, self.global_step = score, trainer.global_step
            self.weights = {k: v.detach().cpu().clone() for k, v in pl_module.bank.state_dict().items()}

    def restore(self, pl_module: Any) -> dict[str, Any] | None:
        """Put the best weights back into the module's bank; ``{global_step, val_avg}`` of that model, or None
        when no validation ran."""
        if self.weights is None:
            return None
        pl_module.bank.load_state_dict(self.weights)
        return {"global_step": self.global_step, "val_avg": self.score}

    def state_dict(self) -> dict[str, Any]:
        return {"score": self.score, "global_step": self.global_step, "weights": self.weights}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.score, self.global_step = state_dict.get("score"), state_dict.get("global_step")
        self.weights = state_dict.get("weights")


class ResumeState(pl.Callback):
    """Makes a resumed run continue exactly where the checkpoint left it: the same random stream and the same
    training-data stream as an uninterrupted run.

    Lightning restores the model, optimizer, schedulers and loop counters, but not the random number
    generators (the router's Relaxed-Bernoulli samples and dropout use torch's), and on resume it creates the
    training iterator before telling the sampler the restored epoch, so the first resumed epoch would replay
    epoch 0's batches. This callback stores Python's ``random``, numpy's, torch's CPU and (when used) CUDA
    generator states in each checkpoint (read when the checkpoint is written, at a training epoch end after
    the epoch's validation), and at ``on_train_start`` of a resumed run puts them back, sets the sampler's
    epoch and re-creates the training iterator (which draws its seed from torch's RNG, as at the start of every
    epoch of an uninterrupted run). A checkpoint written mid-epoch (at a step boundary, when a stop signal
    arrives: :class:`StopAtStepBoundary`) also records how many of the epoch's batches were done; the resumed
    run re-creates the epoch's iterator, starts it after those batches (the stream is a function of the seed
    and the epoch) and only then restores the generators, as they were after the last step. Under DDP every
    rank starts from the same seed and draws the same number of values, so rank 0's state (the one saved) is
    every rank's. Everything is stored as tensors and plain values: ``torch.load(weights_only=True)`` still
    reads the checkpoint.

    The CSV log (:class:`~compt.training.loggers.ResumableCSVLogger`) continues too: the checkpoint records
    how many rows ``metrics.csv`` had, a resumed run drops the rows logged after it (it logs them again) and a
    run that starts from scratch starts the file anew. (Rows logged after the checkpoint of an epoch end but
    for that epoch would be lost; compt logs none: its epoch metrics are logged before the checkpoint.)
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None
        self._restored = False
        self._epoch_batches = 0

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "python": random.getstate(),
            "numpy": _numpy_state(),
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = dict(state_dict) or None

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        for logger in _resumable_loggers(trainer):
            checkpoint[LOG_ROWS_KEY] = logger.rows_written()
        done = trainer.fit_loop.epoch_loop.batch_progress.current.ready
        if 0 < done < trainer.num_training_batches:
            checkpoint[EPOCH_BATCHES_KEY] = done

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        self._restored = True
        self._epoch_batches = int(checkpoint.get(EPOCH_BATCHES_KEY, 0))
        rows = checkpoint.get(LOG_ROWS_KEY)
        for logger in _resumable_loggers(trainer) if rows is not None else []:
            logger.keep_rows(int(rows))

    def on_train_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if not self._restored:  # a run from scratch: a new log
            for logger in _resumable_loggers(trainer):
                logger.keep_rows(0)
        if self._pending is None:
            return
        if self._epoch_batches:  # mid-epoch: the epoch's iterator was made before the saved state
            _restart_train_iterator(trainer, self._epoch_batches)
            _set_rng_state(self._pending)
        else:  # an epoch end: the next epoch's iterator draws from the saved state
            _set_rng_state(self._pending)
            _restart_train_iterator(trainer)
        self._pending, self._epoch_batches = None, 0


def _resumable_loggers(trainer: pl.Trainer) -> list[ResumableCSVLogger]:
    """The trainer's CSV loggers that continue on resume (rank 0 only: the others write nothing)."""
    if not getattr(trainer, "is_global_zero", False):
        return []
    return [logger for logger in trainer.loggers if isinstance(logger, ResumableCSVLogger)]


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_as_python_state(state["python"]))
    _set_numpy_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _restart_train_iterator(trainer: pl.Trainer, start: int = 0) -> None:
    """Set the restored epoch on the training samplers and re-create the iterator Lightning made before it,
    starting at batch ``start`` of the epoch (a checkpoint written mid-epoch)."""
    loop = trainer.fit_loop
    loader, fetcher = getattr(loop, "_combined_loader", None), getattr(loop, "_data_fetcher", None)
    if loader is None or fetcher is None:
        rank_zero_warn(
            "compt: cannot re-position the training data stream on resume (Lightning internals changed)"
        )
        return
    for dataloader in loader.flattened:
        _set_sampler_epoch(dataloader, trainer.current_epoch)
        if start:
            batches = getattr(dataloader, "batch_sampler", None)
            if not hasattr(batches, "resume_at"):
                raise TypeError(f"cannot resume mid-epoch: {type(batches).__name__} cannot skip batches")
            batches.resume_at(start)
    iter(fetcher)


def _as_python_state(state: Any) -> tuple:
    """``random.setstate`` needs tuples; a checkpoint round trip may give lists."""
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


def _numpy_state() -> dict[str, Any]:
    """numpy's legacy global state as tensors and plain values (no numpy objects in the checkpoint)."""
    name, key, pos, has_gauss, cached = np.random.get_state()
    return {
        "name": name,
        "key": torch.from_numpy(key.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached": float(cached),
    }


def _set_numpy_state(state: dict[str, Any]) -> None:
    key = state["key"].numpy().astype(np.uint32)
    np.random.set_state((state["name"], key, state["pos"], state["has_gauss"], state["cached"]))


class CheckpointWriteError(ComptError, OSError):
    """``last.ckpt`` cannot be written (the folder is not writable, the disk is full)."""


class LastCheckpoint(pl.Callback):
    """Writes ``path`` (``last.ckpt``) at the end of every ``every_n_epochs``-th training epoch and when
    training ends, for resuming an interrupted run (and, through :meth:`save`, at the step boundary where a
    stop signal is acted on).

    (Lightning ≥ 2.6's ``ModelCheckpoint(save_top_k=0, save_last=True)`` only writes ``last.ckpt`` when a
    top-k checkpoint was written in the same step, i.e. never before the end.) Saved after the epoch's
    validation and the other callbacks' epoch-end hooks (put this callback after them), through
    ``trainer.save_checkpoint`` to a temporary file renamed into place by rank 0, so a kill mid-write never
    leaves a truncated ``last.ckpt``. ``every_n_epochs <= 0``: only at the end. With ``stop`` (the job's
    :class:`~compt.runtime.stopping.StopRequest`), nothing is written once the job's claim was taken over.
    """

    def __init__(self, path: str | Path, every_n_epochs: int = 1, stop: StopRequest | None = None) -> None:
        self.path = Path(path)
        self.every_n_epochs = int(every_n_epochs)
        self.stop = stop
        self._saved_step = -1

    def save(self, trainer: pl.Trainer) -> None:
        """Write to ``<path>.tmp`` then rename: a run killed while writing keeps its previous ``last.ckpt``
        (nothing when this step is saved already)."""
        if trainer.global_step == self._saved_step or trainer.sanity_checking:
            return
        if self.stop is not None:
            self.stop.verify_claim()
            if agreed_stop(trainer, self.stop) == CLAIM_LOST:
                raise self.stop.claim_lost_error()
        partial = self.path.with_name(self.path.name + ".tmp")
        try:
            trainer.save_checkpoint(partial, weights_only=False)  # every rank calls it; rank 0 writes
        except OSError as err:
            partial.unlink(missing_ok=True)  # a partial file would only hold on to the space it took
            way = "free some space" if err.errno in NO_ROOM else f"make {self.path.parent} writable"
            raise CheckpointWriteError(
                f"cannot write the resume checkpoint {self.path} ({err.strerror or err}): {way}, or "
                "train into another folder (hydra.run.dir=... or paths.log_dir=...)"
            ) from err
        trainer.strategy.barrier("compt_last_checkpoint")
        if trainer.is_global_zero:
            os.replace(partial, self.path)
        self._saved_step = trainer.global_step

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if self.every_n_epochs > 0 and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self.save(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.save(trainer)


def agreed_stop(trainer: pl.Trainer, stop: StopRequest) -> int:
    """``stop.code()`` agreed by every DDP rank (the largest: only rank 0 may have been signalled, and only
    it holds the claim), so that all of them stop at the same step; no collective on one device."""
    code = stop.code()
    if trainer.world_size > 1:
        flag = torch.tensor(code, device=trainer.strategy.root_device)
        code = int(trainer.strategy.reduce(flag, reduce_op=ReduceOp.MAX).item())
    return code


def extra_callbacks(section: DictConfig | None) -> list[pl.Callback]:
    """The Lightning callbacks of the ``callbacks`` config section (``+callbacks=early_stopping`` adds
    ``callbacks.early_stopping``), one per ``_target_`` entry; its scalar keys are compt's checkpoint settings.

    Raises:
        ConfigError: an entry without ``_target_`` or one that cannot be created, naming it and the cause.
    """
    return [
        instantiate_target(conf, f"callbacks.{key}")
        for key, conf in target_entries(section, "callbacks").items()
    ]
