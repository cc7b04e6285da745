"""Prompt tables and their encoders, stacked: one independent encoder per prompt, in one set of tensors.

Stacking (rather than an ``nn.ModuleList`` of per-task modules) keeps every task's prompt in the same
parameters, so a batch that lacks a task never leaves a parameter unused under DDP, and all prompts are
encoded by two batched matrix products.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

ENCODER_KINDS = ("mlp", "none")


class StackedPromptEncoder(nn.Module):
    """``N`` independent prompt encoders ``h = Linear(d, h) → GELU → Linear(h, d)`` applied row-wise.

    Args:
        n_prompts: N, the number of prompts (one encoder each).
        d_model: d, the backbone's hidden size.
        d_hidden: h, the encoder's hidden size.
        residual: add the input to the output (off by default, as in the paper).
        dropout: dropout on the hidden layer (0 by default).
    """

    def __init__(
        self, n_prompts: int, d_model: int, d_hidden: int, residual: bool = False, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.empty(n_prompts, d_model, d_hidden))
        self.b1 = nn.Parameter(torch.empty(n_prompts, 1, d_hidden))
        self.w2 = nn.Parameter(torch.empty(n_prompts, d_hidden, d_model))
        self.b2 = nn.Parameter(torch.empty(n_prompts, 1, d_model))
        self.residual = residual
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """``nn.Linear``'s default: uniform(±1/sqrt(fan_in)) for weights and biases (drawn from ``generator``
        when given, else from torch's global generator)."""
        for weight, bias in ((self.w1, self.b1), (self.w2, self.b2)):
            bound = 1.0 / math.sqrt(weight.shape[1])
            nn.init.uniform_(weight, -bound, bound, generator=generator)
            nn.init.uniform_(bias, -bound, bound, generator=generator)

    def forward(self, prompts: Tensor) -> Tensor:
        """Encode ``(N, L, d)`` raw prompts into ``(N, L, d)``."""
        hidden = F.gelu(torch.baddbmm(self.b1, prompts, self.w1))  # (N, L, h)
        out = torch.baddbmm(self.b2, self.dropout(hidden), self.w2)  # (N, L, d)
        return out + prompts if self.residual else out


class PromptTable(nn.Module):
    """``N`` trainable raw prompts ``(N, L, d)``, each passed through its own encoder.

    Args:
        n_prompts: N.
        length: L, rows per prompt.
        d_model: d.
        encoder: ``mlp`` (the paper) or ``none`` (raw prompt, as in vanilla prompt tuning).
        d_hidden, residual, dropout: see :class:`StackedPromptEncoder`.
    """

    def __init__(
        self,
        n_prompts: int,
        length: int,
        d_model: int,
        encoder: str = "mlp",
        d_hidden: int | None = None,
        residual: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if encoder not in ENCODER_KINDS:
            raise ValueError(f"encoder={encoder!r}; choose one of {', '.join(ENCODER_KINDS)}")
        self.embedding = nn.Parameter(torch.zeros(n_prompts, length, d_model))
        self.encoder = (
            StackedPromptEncoder(n_prompts, d_model, d_hidden or d_model, residual, dropout)
            if encoder == "mlp"
            else None
        )

    def forward(self) -> Tensor:
        """The encoded prompts ``(N, L, d)``."""
        return self.embedding if self.encoder is None else self.encoder(self.embedding)
