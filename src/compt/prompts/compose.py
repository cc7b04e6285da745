"""The one place where ComPT composes prompts (paper Eq. 4-5, METHOD.md §2).

Every method's formula lives in :func:`compose`; the prompt bank, masks, evaluation and export call it.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: methods that have a private prompt per task
METHODS_WITH_PRIVATE = ("pt", "ssum", "msum", "mcat")
#: methods that use the shared source prompts and a router
METHODS_WITH_SOURCES = ("ssum", "msum", "mcat", "sources_only")
METHODS = ("pt", "ssum", "msum", "mcat", "sources_only")


def compose(method: str, private: Tensor | None, sources: Tensor | None, weights: Tensor | None) -> Tensor:
    """Compose every task's target prompt.

    Args:
        method: one of ``pt``, ``ssum``, ``msum``, ``mcat``, ``sources_only``.
        private: private prompts ``(T, L_u, d)``; ignored (may be ``None``) for ``sources_only``.
        sources: source prompts ``(S, L_s, d)``; ignored (may be ``None``) for ``pt``.
        weights: router weights ``(T, S)``; ignored for ``pt``.

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
        ========================  ==========================================  =================
    """
    if method == "pt":
        return _require(private, "private", method)
    sources = _require(sources, "sources", method)
    weights = _require(weights, "weights", method)
    if weights.shape[-1] != sources.shape[0]:
        raise ValueError(
            f"weights {tuple(weights.shape)} must have one column per source ({sources.shape[0]})"
        )
    if method == "mcat":
        n_tasks, n_sources = weights.shape
        _, source_len, d_model = sources.shape
        scaled = weights[:, :, None, None] * sources.unsqueeze(0)  # (T, S, L_s, d)
        concatenated = scaled.reshape(n_tasks, n_sources * source_len, d_model)  # (T, S·L_s, d)
        return _require(private, "private", method) * concatenated
    mix = torch.einsum("ts,sld->tld", weights, sources)  # (T, L_s, d)
    if method == "sources_only":
        return mix
    private = _require(private, "private", method)
    if method == "ssum":
        return private + mix
    if method == "msum":
        return private * mix
    raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")


def _require(tensor: Tensor | None, name: str, method: str) -> Tensor:
    if tensor is None:
        raise ValueError(f"method {method!r} needs {name}")
    return tensor
