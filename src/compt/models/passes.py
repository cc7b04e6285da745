"""How many backbone passes a batch takes on CPU: the fewest tokens' work, a pass counted by its fixed cost.

On CPU a padded position costs what a real one does, so cutting a batch into passes of similar lengths saves
work; but each pass has a fixed cost too (Python and a few calls per layer). Both plans here weigh the two:
:func:`plan_rows` cuts the encoder's rows (sorted by length), :func:`plan_passes` the rank candidates'
teacher-forced continuation (:mod:`compt.models.candidates`). The fixed costs were measured on the tiny T5
(width 64) on CPU and scale with the width (:func:`pass_cost`). Off the CPU, one pass.
"""

from __future__ import annotations

import math
from collections import Counter

import torch

#: one more encoder pass on CPU, in tokens' work, for a backbone of width 64 (the tiny T5: about 2 ms)
ENCODER_PASS_COST_TOKENS = 400
#: one more decoder pass on CPU, in candidate positions' work, for a backbone of width 64 (the tiny T5: about 2 ms)
PASS_COST_POSITIONS = 128
#: on CPU, the most rows one encoder pass takes: with the tiny T5 a pass over 64 rows costs 2.3 times one over 32
#: (T5's position bias makes a ``(rows, heads, N, N)`` tensor, which past 32 rows leaves the cache)
CPU_ENCODER_ROWS = 32


def pass_cost(cost_at_width_64: float, d_model: int, device: torch.device) -> float:
    """A pass's fixed cost in units of one token's (or candidate position's) work through the backbone, for
    width ``d_model`` on ``device``, from its measure on the tiny T5 (width 64) on CPU: a token's work grows with
    d² while a pass's fixed cost does not, so t5-small's (512) is 1/64 of the tiny T5's. Off the CPU a pass costs
    kernel launches and a padded position nearly nothing: infinite (one pass)."""
    if device.type != "cpu":
        return math.inf
    return cost_at_width_64 * (64 / d_model) ** 2


def plan_rows(lengths: list[int], cost: float, max_rows: int = CPU_ENCODER_ROWS) -> list[int]:
    """Where the encoder's passes end over rows of ascending ``lengths`` (tokens, padding aside): row indices, the
    last ``len(lengths)``. A pass over rows ``i … j-1`` costs ``(j - i) × lengths[j-1]`` tokens (each row padded
    to the longest) plus ``cost``, and takes at most ``max_rows`` rows; the plan costs least."""
    best = [0.0] + [math.inf] * len(lengths)
    start = [0] * (len(lengths) + 1)
    for end in range(1, len(lengths) + 1):
        for begin in range(max(0, end - max_rows), end):
            spent = best[begin] + (end - begin) * lengths[end - 1] + cost
            if spent < best[end]:
                best[end], start[end] = spent, begin
    ends = [len(lengths)] if lengths else []
    while ends and start[ends[-1]]:
        ends.append(start[ends[-1]])
    return ends[::-1]


def plan_passes(lengths: list[int], cost: float = PASS_COST_POSITIONS) -> list[int]:
    """Where the continuation passes end, for candidates of ``lengths`` tokens: ascending answer positions, the
    last the longest length (none when every candidate has one token). A pass from position ``a`` to ``b`` runs
    every candidate longer than ``a`` for ``b - a`` positions; the plan spends the fewest positions, each pass
    counted as ``cost`` positions more (infinite: one pass, as a rectangular one)."""
    counts = Counter(lengths)
    ends = sorted(set(counts) - {1})
    if not ends or math.isinf(cost):
        return ends[-1:]
    longer = {a: sum(c for n, c in counts.items() if n > a) for a in [1, *ends]}
    best: dict[int, tuple[float, list[int]]] = {1: (0.0, [])}  # a pass starts at 1 or where another ended
    for end in ends:
        best[end] = min(
            (spent + cost + longer[start] * (end - start), [*plan, end])
            for start, (spent, plan) in best.items()
        )
    return best[ends[-1]][1]
