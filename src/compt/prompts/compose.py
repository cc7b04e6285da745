"""The one place where ComPT composes prompts (paper Eq. 4-5, docs/method.md §2).

Every method's formula lives in :func:`compose`; the prompt bank, masks, evaluation and export call it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from compt.prompts.methods import method_traits


def compose(method: str, private: Tensor | None, sources: Tensor | None, weights: Tensor | None) -> Tensor:
    """Compose every task's target prompt.

    Args:
        method: one of ``pt``, ``ssum``, ``msum``, ``mcat``, ``sources_only``, ``mpt``, ``attempt``.
        private: private prompts ``(T, L_u, d)``; ignored (may be ``None``) for ``sources_only``.
            For ``mpt`` the task matrices ``W_t = u_t v_tᵀ`` ``(T, L, d)``; for ``attempt`` one row per
            *example* (its task's prompt), ``(B, L, d)``.
        sources: source prompts ``(S, L_s, d)``; ignored (may be ``None``) for ``pt``. ``mpt``: ``(1, L, d)``.
        weights: router weights ``(T, S)``; ignored for ``pt`` and ``mpt``. ``attempt``: per-example
            attention ``(B, S + 1)`` over the S sources and, last, the example's own task prompt.

    Returns:
        target prompts ``(T, L_t, d)`` where, with ``mix_t = Σ_s w_ts · P_s`` ``(L_s, d)``:

        ========================  ==========================================  =================
        method                    P_t                                         L_t
        ========================  ==========================================  =================
        ``pt``                    ``P_u``                                     ``L_u``
        ``sources_only``          ``mix_t``                                   ``L_s``
        ``ssum``                  ``P_u + mix_t``                             ``L_u = L_s``
        ``msum``                  ``P_u ⊙ mix_t``                             ``L_u = L_s``
        ``mcat``                  ``P_u ⊙ concat_s(w_ts · P_s)`` (length)     ``L_u = S · L_s``
        ``mpt``                   ``P* ⊙ W_t`` (P* the one shared prompt)      ``L``
        ``attempt``               ``P_t + Σ_s a_s P_s + a_{S} P_t``            ``L``
        ========================  ==========================================  =================
    """
    traits = method_traits(method)
    if not traits.sources:  # pt
        return _require(private, "private", method)
    sources = _require(sources, "sources", method)
    if traits.task_matrices:  # mpt: P* ⊙ W_t
        if sources.shape[0] != 1:
            raise ValueError(f"mpt has one shared prompt, got sources {tuple(sources.shape)}")
        return sources * _require(private, "private", method)
    weights = _require(weights, "weights", method)
    if traits.per_example:  # attempt: a weight per source and, last, for the example's own task prompt
        private = _require(private, "private", method)
        if weights.shape[-1] != sources.shape[0] + 1:
            raise ValueError(
                f"attempt weights {tuple(weights.shape)} need S + 1 = {sources.shape[0] + 1} columns"
            )
        mixed = torch.einsum("bs,sld->bld", weights[:, :-1], sources)  # (B, L, d)
        return private * (1 + weights[:, -1, None, None]) + mixed
    if weights.shape[-1] != sources.shape[0]:
        raise ValueError(
            f"weights {tuple(weights.shape)} must have one column per source ({sources.shape[0]})"
        )
    if traits.concatenates:  # mcat
        n_tasks, n_sources = weights.shape
        _, source_len, d_model = sources.shape
        scaled = weights[:, :, None, None] * sources.unsqueeze(0)  # (T, S, L_s, d)
        mix = scaled.reshape(n_tasks, n_sources * source_len, d_model)  # (T, S·L_s, d)
    else:
        mix = torch.einsum("ts,sld->tld", weights, sources)  # (T, L_s, d)
    if not traits.private:  # sources_only
        return mix
    private = _require(private, "private", method)
    return private + mix if traits.operation == "add" else private * mix


def _require(tensor: Tensor | None, name: str, method: str) -> Tensor:
    if tensor is None:
        raise ValueError(f"method {method!r} needs {name}")
    return tensor
