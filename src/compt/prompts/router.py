"""The router: per-task weights over the shared source prompts (paper §2.3, Eq. 7; docs/method.md §3)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, RelaxedBernoulli

from compt.errors import ConfigError
from compt.fields import knob

TRAIN_NORMS = ("softmax", "sum_compat")
ANNEALS = ("linear", "step_compat")
SAMPLES = ("per_example", "per_task")
"""``router.sample``: one Relaxed-Bernoulli draw per training example (the authors' code), or one per task and
step shared by that task's examples."""
SUM_COMPAT_EPS = 1e-8
"""The authors' code adds this to ``z / Σz`` before the softmax (``sum_compat``)."""


@dataclass(frozen=True)
class RouterSchedule:
    """The Relaxed-Bernoulli temperature τ over training (docs/method.md §3)."""

    anneal: str = knob("router.anneal", "linear")
    """linear: τ0 → tau_min over all steps (the paper) | step_compat: the authors' code, τ0 by k (5 if k < 10,
    3 if k < 20, else 1) minus ``decrement`` per step, never below tau_min"""
    tau0: float = knob("router.tau0", 5.0)
    """τ at step 0 (``linear``; ``step_compat`` takes it from k)"""
    tau_min: float = knob("router.tau_min", 1e-3)
    """the last (``linear``) or lowest (``step_compat``) τ"""
    decrement: float = knob("router.decrement", 0.02)
    """``step_compat`` only: τ lost per optimizer step"""
    k: int | None = None
    """training examples per task; ``step_compat`` derives τ0 from it (required then)"""

    def __post_init__(self) -> None:
        if self.anneal not in ANNEALS:
            raise ConfigError(f"router.anneal={self.anneal!r}; choose one of {', '.join(ANNEALS)}")
        if self.anneal == "step_compat" and self.k is None:
            raise ConfigError("router.anneal=step_compat takes τ0 from k: give the schedule k")

    @property
    def initial_temperature(self) -> float:
        """τ0: ``tau0``, or with ``step_compat`` the authors' value for k."""
        return compat_initial_temperature(int(self.k)) if self.anneal == "step_compat" else self.tau0

    def temperature(self, step: int, total_steps: int) -> float:
        """τ after ``step`` optimizer steps of ``total_steps``."""
        if self.anneal == "step_compat":
            return step_temperature(step, self.initial_temperature, self.tau_min, self.decrement)
        return linear_temperature(step, total_steps, self.tau0, self.tau_min)


def linear_temperature(step: int, total_steps: int, tau0: float, tau_min: float) -> float:
    """The paper's schedule: τ falls linearly from ``tau0`` at step 0 to ``tau_min`` at ``total_steps``."""
    if total_steps <= 0:
        return tau_min
    frac = min(max(step / total_steps, 0.0), 1.0)
    return tau0 + (tau_min - tau0) * frac


def compat_initial_temperature(k: int) -> float:
    """The authors' code overrode τ0 by shot count: 5 if k < 10, 3 if k < 20, else 1."""
    if k < 10:
        return 5.0
    if k < 20:
        return 3.0
    return 1.0


def step_temperature(step: int, tau0: float, tau_min: float, decrement: float) -> float:
    """The authors' code: subtract ``decrement`` per optimizer step, never below ``tau_min``."""
    return max(tau_min, tau0 - decrement * step)


def normalise_sample(z: Tensor, train_norm: str = "softmax", keep: Tensor | None = None) -> Tensor:
    """Training weights from a Relaxed-Bernoulli sample ``z`` ``(..., S)`` in (0, 1).

    ``softmax``: ``softmax(z)`` (paper Eq. 7). ``sum_compat``: ``softmax(z / Σz + 1e-8)``, what the authors' code
    computes. ``keep`` (bool ``(S,)``) drops sources: they get weight 0 and the rest are renormalised.
    """
    if train_norm == "sum_compat":
        if keep is not None:
            z = z * keep.to(z.dtype)
        z = z / z.sum(-1, keepdim=True) + SUM_COMPAT_EPS
    elif train_norm != "softmax":
        raise ValueError(f"router.train_norm={train_norm!r}; choose one of {', '.join(TRAIN_NORMS)}")
    return masked_softmax(z, keep)


def masked_softmax(scores: Tensor, keep: Tensor | None = None) -> Tensor:
    """``softmax`` over the last axis of ``scores`` ``(..., S)`` restricted to the kept sources (dropped ones get 0;
    all dropped gives all 0)."""
    if keep is not None:
        scores = scores.masked_fill(~keep.to(scores.device), float("-inf"))
    return torch.nan_to_num(torch.softmax(scores, dim=-1), nan=0.0)


@contextmanager
def unvalidated_distributions() -> Iterator[None]:
    """torch.distributions without argument validation inside the block.

    NaN logits (a diverged run) then give NaN weights, which the training loop's divergence guard reports,
    instead of a ValueError from inside the distribution; and no step waits for the device to say whether
    the logits are finite. (``RelaxedBernoulli(validate_args=False)`` does not reach its base distribution.)
    """
    previous = Distribution._validate_args
    Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        Distribution.set_default_validate_args(previous)


class Router(nn.Module):
    """Learned task → source weights from a zero-initialised logit matrix ``W`` ``(T, S)``.

    Training: ``z ~ RelaxedBernoulli(τ, logits=W[t])`` (reparameterised), weights ``normalise_sample(z)``
    (``softmax(z)``, or the authors' ``softmax(z / Σz + 1e-8)`` with ``train_norm="sum_compat"``). The sample is
    drawn once per row asked for: per task ``(T, S)``, or per example ``(B, S)`` when ``task_ids`` are given.
    Evaluation: ``softmax(W[t])``, identical for every example of a task. ``learn=False`` gives constant weights
    ``1/S`` (and no parameters). ``keep`` (a bool ``(S,)`` mask) drops sources and renormalises over the kept ones.
    """

    def __init__(self, n_tasks: int, n_sources: int, learn: bool = True, train_norm: str = "softmax") -> None:
        super().__init__()
        if train_norm not in TRAIN_NORMS:
            raise ValueError(f"router.train_norm={train_norm!r}; choose one of {', '.join(TRAIN_NORMS)}")
        self.n_tasks, self.n_sources, self.learn, self.train_norm = n_tasks, n_sources, learn, train_norm
        self.logits = nn.Parameter(torch.zeros(n_tasks, n_sources)) if learn else None
        self.register_buffer("_constant", torch.ones(n_tasks, n_sources), persistent=False)
        #: the Relaxed-Bernoulli temperature τ; set by the training loop every optimizer step
        self.temperature: float = RouterSchedule.tau0

    @property
    def samples(self) -> bool:
        """Whether the weights are sampled now (learned router in training mode)."""
        return self.logits is not None and self.training

    def forward(self, keep: Tensor | None = None, task_ids: Tensor | None = None) -> Tensor:
        """Router weights, rows summing to 1 over the kept sources (dropped sources get 0).

        Returns:
            ``(T, S)`` one row per task, or ``(B, S)`` one row per example when ``task_ids`` ``(B,)`` is given
            (in training each of those rows is its own sample).
        """
        if self.logits is None:
            ones = self._constant if task_ids is None else self._constant[task_ids]
            if keep is not None:
                ones = ones * keep.to(ones.dtype)
            return ones / ones.sum(-1, keepdim=True).clamp_min(1.0)
        logits = self.logits if task_ids is None else self.logits[task_ids]
        if not self.training:
            return masked_softmax(logits, keep)
        temperature = torch.tensor(self.temperature, dtype=logits.dtype, device=logits.device)
        with unvalidated_distributions():
            z = RelaxedBernoulli(temperature, logits=logits).rsample()  # (rows, S) in (0, 1)
        return normalise_sample(z, self.train_norm, keep)
