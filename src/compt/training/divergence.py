"""Diverged runs: a NaN or infinite loss or prompt parameter stops training and is recorded as such, never as
a result.

:class:`DivergenceGuard` keeps, on the device, the first optimizer step whose loss was not finite (a few tensor
ops per step, no host sync) and reads it, with a finiteness check of every bank parameter, at a cheap cadence:
every ``log_every_n_steps`` steps (when Lightning syncs for logging anyway), before each validation and at each
epoch end (before the epoch's checkpoint is written, so ``last.ckpt`` never holds a diverged state). Under DDP
the ranks agree through one small all-reduce at those points. On divergence it raises :class:`RunDiverged`;
the run driver writes ``results.json`` with ``"status": "diverged"`` (:func:`diverged_results`), which
relaunches skip (``force=true`` re-runs the job) and ``compt report`` lists apart, never averaging it.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from torch.distributed import ReduceOp

from compt.errors import RunDiverged
from compt.runs import DIVERGED, FORMAT_VERSION

#: the "no bad step yet" value of the device-side flag
NO_STEP = 2**62


class DivergenceGuard(pl.Callback):
    """Stops training at the first non-finite loss or bank parameter (see the module docstring).

    Args:
        check_every_n_steps: read the device-side flag every this many optimizer steps (default: the
            trainer's ``log_every_n_steps``); it is also read before each validation and at each epoch end.
    """

    def __init__(self, check_every_n_steps: int | None = None) -> None:
        self.check_every_n_steps = check_every_n_steps
        self._first_bad: torch.Tensor | None = None
        self._read_at = -1

    def on_train_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self._first_bad = torch.full((), NO_STEP, dtype=torch.long, device=pl_module.device)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and self._first_bad is not None:
            step = torch.where(torch.isfinite(loss.detach()), NO_STEP, trainer.global_step)
            self._first_bad = torch.minimum(self._first_bad, step.to(self._first_bad.device))
        # read every n-th step, once (several batches share a step when gradients accumulate)
        every = self.check_every_n_steps or trainer.log_every_n_steps
        if every > 0 and trainer.global_step % every == 0 and trainer.global_step != self._read_at:
            self.check(trainer, pl_module)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            self.check(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.check(trainer, pl_module)

    def check(self, trainer: pl.Trainer, pl_module: Any) -> None:
        """Read the flag (one host sync) and raise :class:`RunDiverged` if the loss or a bank parameter
        is no longer finite."""
        if self._first_bad is None:
            return
        self._read_at = trainer.global_step
        first_bad = self._first_bad.clone()
        params = [p.detach() for p in pl_module.bank.parameters()]
        if params:  # a parameter gone bad before any loss did: this step
            params_ok = torch.stack([torch.isfinite(p).all() for p in params]).all().to(first_bad.device)
            now = torch.minimum(first_bad, first_bad.new_tensor(trainer.global_step))
            first_bad = torch.where(params_ok, first_bad, now)
        first_bad = trainer.strategy.reduce(first_bad, reduce_op=ReduceOp.MIN)  # the ranks agree
        step = int(first_bad.item())
        if step == NO_STEP:
            return
        rates = learning_rates(pl_module)
        raise RunDiverged(divergence_message(step, rates), step, rates)


def learning_rates(pl_module: Any) -> dict[str, float]:
    """The configured (peak) learning rate of each optimizer group, as ``{"optim.lr.<group>": value}``."""
    try:
        groups = pl_module.optimizers().optimizer.param_groups
    except Exception:  # no optimizer attached (a test calling the guard directly)
        return {}
    return {f"optim.lr.{g.get('name', i)}": float(g.get("initial_lr", g["lr"])) for i, g in enumerate(groups)}


def divergence_message(step: int, rates: dict[str, float]) -> str:
    """The one line a diverged run prints: the step, what went wrong, the likely cause with its values."""
    shown = ", ".join(f"{key}={value:g}" for key, value in rates.items())
    cause = (
        f"the learning rate is likely too high ({shown})" if shown else "the learning rate is likely too high"
    )
    return (
        f"training diverged at step {step}: the loss or a prompt parameter became NaN or infinite; {cause}. "
        "The job is recorded as diverged (results.json status 'diverged') and skipped by relaunches and "
        "compt report; lower the learning rate, or re-run it with force=true"
    )


def diverged_results(
    error: RunDiverged, identity: dict[str, Any], curves: dict[str, Any] | None = None
) -> dict[str, Any]:
    """results.json of a diverged run: the run's identity (method, k, seed, tasks, overrides, group, config,
    ...), the step, the learning rates and the message; no metrics."""
    return {
        "format_version": FORMAT_VERSION,
        **identity,
        "status": DIVERGED,
        "diverged": {"step": error.step, "learning_rates": error.learning_rates, "message": str(error)},
        "curves": curves or {"train_loss": [], "val_avg": []},
    }


def inherited_divergence(part: dict[str, Any], identity: dict[str, Any], where: str) -> dict[str, Any]:
    """results.json of a run whose sub-run (a SPoT stage, a single-task run) diverged: that sub-run's
    divergence, recorded under this run's identity."""
    diverged = dict(part.get("diverged") or {})
    diverged["in"] = where
    return {**part, **identity, "status": DIVERGED, "diverged": diverged}
