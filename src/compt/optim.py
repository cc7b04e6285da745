"""AdamW with the three named parameter groups (a PEFT adapter's one) and a linear warm-up/decay schedule
(docs/method.md §4)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.optim.lr_scheduler import LambdaLR

from compt.errors import ConfigError
from compt.fields import knob
from compt.prompts.bank import GROUPS, PromptBank

SCHEDULES = ("linear", "linear_compat")
AUTHORS_EXTRA_STEPS = 5
"""The authors' scheduler horizon is ``A + warm-up + 5`` (``attempt/run_seq2seq.py`` c7a19a2 L1229–1236)."""


@dataclass
class OptimConfig:
    """Optimisation settings (paper §3.2)."""

    lr_router: float = knob("optim.lr.router", 0.1)
    """learning rate of the router logits"""
    lr_sources: float = knob("optim.lr.sources", 0.05)
    """learning rate of the source prompts and their encoders"""
    lr_private: float = knob("optim.lr.private", 0.02)
    """learning rate of the private prompts and their encoders"""
    lr_adapter: float = knob("optim.lr.adapter", 3e-4)
    """learning rate of a PEFT adapter (``method=lora`` / ``prefix``: each method's is set with it,
    ``conf/method_settings/``)"""
    eps: float = knob("optim.eps", 1e-6)
    """AdamW epsilon"""
    weight_decay: float = knob("optim.weight_decay", 0.0)
    """AdamW weight decay"""
    warmup_ratio: float = knob("optim.warmup_ratio", 0.2)
    """fraction of all optimizer steps spent warming up linearly from 0"""
    schedule: str = knob("optim.schedule", "linear")
    """linear: decay to 0 at the last step (paper) | linear_compat: the authors' scheduler, built from their step
    count A (``compat_steps``): warm-up ``warmup_ratio · A`` steps (a float), then linear decay to 0 at
    ``A + warm-up + 5``, whatever the run's real step count"""
    compat_steps: int | None = None
    """``linear_compat`` only: the authors' step count A = ⌊N·E / min(N, bs)⌋ (:func:`authors_step_count`), set
    by the run; None = the run's real step count"""

    def __post_init__(self) -> None:
        for name in ("lr_router", "lr_sources", "lr_private", "lr_adapter", "eps"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"optim.{name} must be > 0, got {getattr(self, name):g}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError(f"optim.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"optim.schedule={self.schedule!r} is not one of {', '.join(SCHEDULES)}")


def authors_step_count(rows: int, epochs: int, batch_size: int) -> int:
    """The step count the authors' scheduler is built from: A = ⌊N·E / min(N, bs)⌋, with N the training rows
    they counted (``max_train_samples`` × tasks, whatever a task's split holds), E the epochs (already doubled for
    small k) and bs the batch size, which they first capped at N (``attempt/run_seq2seq.py`` c7a19a2 L1203–1209,
    L1229–1230). The run itself takes E·⌈n/bs⌉ steps over its n real rows."""
    return rows * epochs // min(rows, batch_size)


def linear_warmup_decay(step: int, total_steps: int, warmup_steps: int) -> float:
    """LR multiplier: 0 → 1 over ``warmup_steps``, then 1 → 0 at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / max(1, warmup_steps)
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def authors_linear(step: int, warmup: float, horizon: float) -> float:
    """LR multiplier of ``transformers.get_linear_schedule_with_warmup(num_warmup_steps=warmup,
    num_training_steps=horizon)``, which the authors' code called with a float warm-up: ``step / warmup`` (0 at
    step 0), then ``(horizon − step) / (horizon − warmup)``, never below 0."""
    if step < warmup:
        return step / max(1.0, warmup)
    return max(0.0, (horizon - step) / max(1.0, horizon - warmup))


def schedule_multiplier(config: OptimConfig, total_steps: int) -> Callable[[int], float]:
    """The LR multiplier as a function of the optimizer step: the paper's linear warm-up/decay over
    ``total_steps``, or with ``linear_compat`` the authors' (:func:`authors_linear` with A = ``compat_steps`` or
    ``total_steps``, warm-up 0.2·A and horizon A + warm-up + 5)."""
    if config.schedule == "linear_compat":
        steps = config.compat_steps or total_steps
        warmup_steps = config.warmup_ratio * steps  # a float, as theirs
        horizon = steps + warmup_steps + AUTHORS_EXTRA_STEPS
        return lambda step: authors_linear(step, warmup_steps, horizon)
    warmup = int(config.warmup_ratio * total_steps)
    return lambda step: linear_warmup_decay(step, total_steps, warmup)


def build_optimizer(
    bank: PromptBank, config: OptimConfig, total_steps: int
) -> tuple[torch.optim.Optimizer, LambdaLR]:
    """AdamW over the bank's groups ``router`` / ``sources`` / ``private`` (a PEFT adapter's: ``adapter``; empty
    ones left out), each named, and
    the LR schedule of :func:`schedule_multiplier` (``total_steps``: the optimizer steps the run takes)."""
    lrs = {
        "router": config.lr_router,
        "sources": config.lr_sources,
        "private": config.lr_private,
        "adapter": config.lr_adapter,
    }
    groups = [
        {"name": name, "params": params, "lr": lrs[name]}
        for name, params in bank.parameter_groups().items()
        if params
    ]
    assert {g["name"] for g in groups} <= set(GROUPS)
    optimizer = torch.optim.AdamW(groups, eps=config.eps, weight_decay=config.weight_decay)
    return optimizer, LambdaLR(optimizer, schedule_multiplier(config, total_steps))
