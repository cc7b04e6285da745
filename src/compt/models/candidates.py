"""Rank scoring shared by both backbone families: which candidates are present, and their log-likelihoods in
teacher-forced passes planned by candidate length, so that a short candidate is not padded to a long one where
that costs more than a pass.

An example's candidates share its prefix (the encoder's output and the first decoder step, or the causal
prompt), whose KV cache the family computes once per example; the first answer token's distribution comes with
it. What remains is teacher-forced continuation: a candidate of ``n`` tokens needs answer positions ``1 … n-1``.
One rectangular pass pads every candidate to the longest: the demo's stsb values are 3 tokens but "5.0" is 4,
so one such row pads 25 candidates by a position; a label word (2 tokens) beside them runs 3 positions instead
of 1. Passes by length avoid that, but each pass has a fixed cost too (on the tiny T5, about what 130 candidate
positions cost; relatively less on wider backbones). :func:`~compt.models.passes.plan_passes` picks where
passes end to spend the fewest positions. The candidates go longest first, so the ones a later pass continues are the first
rows of the cache: it keeps a slice (a view; the cross-attention keys and values are copied once per candidate,
by the first pass's cut, never again). A candidate padded in a pass ends in it: nothing it pads is read later.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from compt.models.passes import PASS_COST_POSITIONS, pass_cost, plan_passes

Continue = Callable[[Tensor, Tensor, int], Tensor]
"""``continue_(rows, inputs, start)``: the backbone's logits ``(n, k, V)`` for the teacher-forced ``inputs``
``(n, k)`` of the candidates ``rows`` ``(n,)`` (indices into the present candidates) at answer positions
``start … start+k-1`` (position 0 is the shared first step; position j's input is the candidate's token j-1;
a candidate shorter than the pass has id 0 after its end), from the cache, which holds exactly those rows."""


def present_candidates(candidate_labels: Tensor) -> tuple[Tensor, Tensor]:
    """The candidates of ``candidate_labels`` ``(B, C, M)`` that are present (not all -100), flattened in
    ``(example, candidate)`` order: the example each belongs to ``(N,)`` and their ids ``(N, M')``, cut to the
    longest present candidate (M' ≤ M; every candidate has at least one token, and its padding is at its end)."""
    present = (candidate_labels != -100).any(-1)  # (B, C)
    labels = candidate_labels[present]  # (N, M)
    owner = present.nonzero()[:, 0]
    length = int((labels != -100).any(0).nonzero().max()) + 1 if labels.numel() else 1
    return owner, labels[:, :length]


def token_log_probs(logits: Tensor, targets: Tensor) -> Tensor:
    """Summed log-probabilities ``(n,)`` of ``targets`` ``(n, k)`` (token ids, -100 = padding, not counted) under
    ``logits`` ``(n, k, V)`` (position j predicts token j), in fp32."""
    log_probs = torch.log_softmax(logits.float(), -1)
    token = log_probs.gather(-1, targets.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    return (token * (targets != -100)).sum(-1)


def score_present(
    first: Tensor, owner: Tensor, labels: Tensor, cache: object, continue_: Continue, width: int
) -> Tensor:
    """Log-likelihoods ``(N,)`` of the present candidates ``labels`` ``(N, M')`` (-100 after each one's end;
    :func:`present_candidates`), in the passes :func:`~compt.models.passes.plan_passes` plans (see the
    module's docstring).

    Args:
        first: ``(B, V)`` each example's first-token logits (shared by its candidates).
        owner: ``(N,)`` the example each candidate belongs to.
        cache: the KV cache after ``first``, one row per example; cut in place (``batch_select_indices``) to the
            candidates each pass runs.
        continue_: runs a pass (:data:`Continue`).
        width: the backbone's hidden size (what a pass costs against a position:
            :func:`~compt.models.passes.pass_cost`).
    """
    lengths = (labels != -100).sum(-1)  # (N,), ≥ 1
    scores = token_log_probs(first[owner].unsqueeze(1), labels[:, :1])
    longest_first = lengths.argsort(descending=True, stable=True)
    done = 1  # answer positions scored so far
    cost = pass_cost(PASS_COST_POSITIONS, width, first.device)
    for end in plan_passes(lengths.tolist(), cost):
        count = int((lengths > done).sum())  # the candidates this pass runs: the longest ones
        rows = longest_first[:count]
        if done == 1:  # each candidate's copy of its example's cache, longest first
            cache.batch_select_indices(owner[rows])  # type: ignore[attr-defined]
        else:  # the first rows of the cache: a view, no copy
            cache.batch_select_indices(slice(0, count))  # type: ignore[attr-defined]
        inputs = labels[rows, done - 1 : end - 1].clamp_min(0)  # (count, end - done)
        logits = continue_(rows, inputs, done)  # (count, end - done, V)
        scores[rows] += token_log_probs(logits, labels[rows, done:end])
        done = end
    return scores


def scatter_scores(scores: Tensor, candidate_labels: Tensor) -> Tensor:
    """The present candidates' ``scores`` ``(N,)`` in their places of ``candidate_labels`` ``(B, C, M)``:
    ``(B, C)``, absent candidates ``-inf``."""
    present = (candidate_labels != -100).any(-1)  # (B, C)
    out = torch.full(present.shape, float("-inf"), device=scores.device)
    out[present] = scores
    return out
