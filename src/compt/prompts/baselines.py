"""The trainable parts of the same-protocol baselines that differ from ComPT's.

* MPT (Wang et al., 2023, "Multitask Prompt Tuning Enables Parameter-Efficient Transfer Learning"):
  task t's prompt is the shared prompt times a rank-r task matrix, ``P_t = P* ⊙ (u_t v_tᵀ)``. Reproduced:
  that parameterisation trained jointly on all tasks. Not reproduced: MPT's prompt distillation from
  single-task teacher prompts (its first stage), and its separate adaptation stage.
* ATTEMPT (Asai et al., 2022, "ATTEMPT: Parameter-Efficient Multi-task Tuning via Attentional Mixtures of
  Soft Prompts"): each example's prompt is its task prompt plus an attention mixture of source prompts (and of
  the task prompt itself), the attention computed per example from the max-pooled input embedding through a
  small down/up projection with layer norm and a softmax temperature. Reproduced: that attention and mixture,
  with sources learned jointly or loaded (and frozen) from a bank trained earlier. Not reproduced: ATTEMPT's
  source prompts pre-trained on its six large source tasks (load your own with ``sources.init_from``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from compt.prompts.compose import compose
from compt.prompts.masks import PromptMask


class LowRankTaskMatrices(nn.Module):
    """T rank-r matrices ``W_t = u_t v_tᵀ`` ``(L, d)``: ``u`` ``(T, L, r)``, ``v`` ``(T, d, r)``.

    Initialised so that every ``W_t`` starts near all-ones (each task starts from the shared prompt), with a
    little noise so that the r rank-one components do not stay identical.
    """

    def __init__(self, n_tasks: int, length: int, d_model: int, rank: int = 1) -> None:
        super().__init__()
        self.u = nn.Parameter(torch.empty(n_tasks, length, rank))
        self.v = nn.Parameter(torch.empty(n_tasks, d_model, rank))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        rank = self.u.shape[-1]
        self.u.fill_(1.0 / rank).add_(torch.randn(self.u.shape, generator=generator) * 0.01 / rank)
        self.v.fill_(1.0).add_(torch.randn(self.v.shape, generator=generator) * 0.01)

    def forward(self) -> Tensor:
        """The task matrices ``(T, L, d)``."""
        return torch.einsum("tlr,tdr->tld", self.u, self.v)


class InputAttention(nn.Module):
    """ATTEMPT's attention: per example, weights over S source prompts and the example's own task prompt.

    ``h = LayerNorm(W_up · SiLU(W_down · maxpool(X)))`` and ``a = softmax(⟨maxpool(P_k), h⟩ / temperature)``
    over the candidates k (sources, then the task prompt).

    Args:
        d_model: d.
        d_hidden: width of the down projection.
        temperature: softmax temperature (ATTEMPT's T).
    """

    def __init__(self, d_model: int, d_hidden: int, temperature: float) -> None:
        super().__init__()
        self.down = nn.Linear(d_model, d_hidden)
        self.up = nn.Linear(d_hidden, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.temperature = temperature

    def forward(
        self, inputs_embeds: Tensor, attention_mask: Tensor, candidates: Tensor, keep: Tensor
    ) -> Tensor:
        """Weights ``(B, K)``.

        Args:
            inputs_embeds: the input's token embeddings ``(B, N, d)``.
            attention_mask: ``(B, N)``; padding is left out of the max-pool.
            candidates: the candidate prompts ``(B, K, L, d)`` (sources, then the task prompt).
            keep: ``(K,)`` bool, candidates taking part (masks); dropped ones get weight 0.
        """
        tokens = inputs_embeds.float().masked_fill(~attention_mask.bool().unsqueeze(-1), -math.inf)
        pooled = tokens.max(1).values  # (B, d)
        query = self.norm(self.up(F.silu(self.down(pooled.to(self.down.weight.dtype)))))  # (B, d)
        keys = candidates.max(2).values  # (B, K, d)
        scores = torch.einsum("bd,bkd->bk", query, keys.to(query.dtype)) / self.temperature
        scores = scores.masked_fill(~keep.to(scores.device), -math.inf)
        return torch.softmax(scores, -1)


class AttemptComposer(InputAttention):
    """ATTEMPT's composition, which is per example: the input attention (the parameters of
    :class:`InputAttention`) weighs the S sources and the example's own task prompt, and ``compose("attempt")``
    mixes them. A mask drops candidates (weight 0); a dropped task prompt also leaves the sum (its rows become 0).
    """

    def example_prompts(
        self,
        private: Tensor,
        sources: Tensor,
        inputs_embeds: Tensor,
        attention_mask: Tensor,
        mask: PromptMask | None,
    ) -> Tensor:
        """Each example's prompt ``(B, L, d)``.

        Args:
            private: each example's task prompt ``(B, L, d)``.
            sources: the source prompts ``(S, L, d)``.
            inputs_embeds, attention_mask: the input ``(B, N, d)``, ``(B, N)``.
            mask: the parts taking part (None: all).
        """
        keep_sources = (True,) * sources.shape[0] if mask is None else mask.keep_sources
        keep_private = True if mask is None else mask.keep_private
        keep = torch.tensor([*keep_sources, keep_private], device=private.device)
        candidates = torch.cat(
            [sources.unsqueeze(0).expand(len(private), -1, -1, -1), private.unsqueeze(1)], 1
        )  # (B, S + 1, L, d)
        weights = self(inputs_embeds, attention_mask, candidates, keep)  # (B, S + 1)
        if not keep_private:
            private = torch.zeros_like(private)
        return compose("attempt", private, sources, weights)
