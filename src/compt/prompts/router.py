"""The router: per-task weights over the shared source prompts (paper §2.3, Eq. 7; METHOD.md §3)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import RelaxedBernoulli

TRAIN_NORMS = ("softmax", "sum_compat")
ANNEALS = ("linear", "step_compat")


def linear_temperature(step: int, total_steps: int, tau0: float = 5.0, tau_min: float = 1e-3) -> float:
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


def step_temperature(step: int, tau0: float, tau_min: float = 1e-3, decrement: float = 0.02) -> float:
    """The authors' code: subtract ``decrement`` per optimizer step, never below ``tau_min``."""
    return max(tau_min, tau0 - decrement * step)


def temperature_at(
    step: int,
    total_steps: int,
    anneal: str = "linear",
    tau0: float = 5.0,
    tau_min: float = 1e-3,
    decrement: float = 0.02,
) -> float:
    """The router temperature after ``step`` optimizer steps of ``total_steps`` (``anneal``: linear|step_compat).

    For ``step_compat`` pass ``tau0=compat_initial_temperature(k)`` to reproduce the authors' code exactly.
    """
    if anneal == "linear":
        return linear_temperature(step, total_steps, tau0, tau_min)
    if anneal == "step_compat":
        return step_temperature(step, tau0, tau_min, decrement)
    raise ValueError(f"router.anneal={anneal!r}; choose one of {', '.join(ANNEALS)}")


class Router(nn.Module):
    """Learned task → source weights ``(T, S)`` from a zero-initialised logit matrix.

    Training: ``z ~ RelaxedBernoulli(τ, logits=W[t])`` (reparameterised), ``w_t = softmax(z)``
    (or ``z / Σz`` with ``train_norm="sum_compat"``, the authors' code). Evaluation: ``w_t = softmax(W[t])``.
    ``learn=False`` gives constant weights ``1/S`` (and no parameters).
    ``keep`` (a bool ``(S,)`` mask) drops sources and renormalises over the kept ones.
    """

    def __init__(self, n_tasks: int, n_sources: int, learn: bool = True, train_norm: str = "softmax") -> None:
        super().__init__()
        if train_norm not in TRAIN_NORMS:
            raise ValueError(f"router.train_norm={train_norm!r}; choose one of {', '.join(TRAIN_NORMS)}")
        self.n_tasks, self.n_sources, self.learn, self.train_norm = n_tasks, n_sources, learn, train_norm
        self.logits = nn.Parameter(torch.zeros(n_tasks, n_sources)) if learn else None
        self.register_buffer("_constant", torch.ones(n_tasks, n_sources), persistent=False)
        #: the Relaxed-Bernoulli temperature τ; set by the training loop every optimizer step
        self.temperature: float = 5.0

    def forward(self, keep: Tensor | None = None) -> Tensor:
        """Router weights ``(T, S)``; rows sum to 1 over the kept sources, dropped sources get 0."""
        if self.logits is None:
            ones = self._constant
            if keep is not None:
                ones = ones * keep.to(ones.dtype)
            return ones / ones.sum(-1, keepdim=True).clamp_min(1.0)
        logits = self.logits
        if self.training:
            temperature = torch.tensor(self.temperature, dtype=logits.dtype, device=logits.device)
            z = RelaxedBernoulli(temperature, logits=logits).rsample()  # (T, S) in (0, 1)
            if self.train_norm == "sum_compat":
                z = z if keep is None else z * keep.to(z.dtype)
                return z / z.sum(-1, keepdim=True)
            logits = z  # softmax of the sample
        if keep is not None:
            logits = logits.masked_fill(~keep.to(logits.device), float("-inf"))
        weights = torch.softmax(logits, dim=-1)
        return torch.nan_to_num(weights, nan=0.0)  # all sources dropped → zero weights
