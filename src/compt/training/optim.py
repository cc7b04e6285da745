"""AdamW with the three named parameter groups and a linear warm-up/decay schedule (docs/method.md §4)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.optim.lr_scheduler import LambdaLR

from compt.errors import ConfigError
from compt.prompts.bank import GROUPS, PromptBank

SCHEDULES = ("linear", "linear_compat")
AUTHORS_EXTRA_STEPS = 5
"""The authors' scheduler horizon is ``steps + warm-up + 5`` (docs/method.md §8, LR schedule)."""


@dataclass
class OptimConfig:
    """Optimisation settings (paper §3.2)."""

    lr_router: float = 0.1
    """learning rate of the router logits"""
    lr_sources: float = 0.05
    """learning rate of the source prompts and their encoders"""
    lr_private: float = 0.02
    """learning rate of the private prompts and their encoders"""
    eps: float = 1e-6
    """AdamW epsilon"""
    weight_decay: float = 0.0
    """AdamW weight decay"""
    warmup_ratio: float = 0.2
    """fraction of all optimizer steps spent warming up linearly from 0"""
    schedule: str = "linear"
    """linear: decay to 0 at the last step (paper) | linear_compat: the authors' horizon ``steps + warm-up + 5``,
    so the rate never reaches 0"""

    def __post_init__(self) -> None:
        for name in ("lr_router", "lr_sources", "lr_private", "eps"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"optim.{name} must be > 0, got {getattr(self, name):g}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError(f"optim.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"optim.schedule={self.schedule!r} is not one of {', '.join(SCHEDULES)}")


def linear_warmup_decay(step: int, total_steps: int, warmup_steps: int) -> float:
    """LR multiplier: 0 → 1 over ``warmup_steps``, then 1 → 0 at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / max(1, warmup_steps)
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def build_optimizer(
    bank: PromptBank, config: OptimConfig, total_steps: int
) -> tuple[torch.optim.Optimizer, LambdaLR]:
    """AdamW over the bank's groups ``router`` / ``sources`` / ``private`` (empty ones left out), each named, and
    a linear warm-up/decay over ``total_steps`` (``schedule="linear_compat"``: decaying towards 0 at
    ``total + warm-up + 5`` instead, as the authors' code did)."""
    lrs = {"router": config.lr_router, "sources": config.lr_sources, "private": config.lr_private}
    groups = [
        {"name": name, "params": params, "lr": lrs[name]}
        for name, params in bank.parameter_groups().items()
        if params
    ]
    assert {g["name"] for g in groups} <= set(GROUPS)
    optimizer = torch.optim.AdamW(groups, eps=config.eps, weight_decay=config.weight_decay)
    warmup = int(config.warmup_ratio * total_steps)
    horizon = total_steps + (warmup + AUTHORS_EXTRA_STEPS if config.schedule == "linear_compat" else 0)
    scheduler = LambdaLR(optimizer, lambda step: linear_warmup_decay(step, horizon, warmup))
    return optimizer, scheduler
