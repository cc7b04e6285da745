"""A 2-rank gloo worker for tests/test_qa_tasks.py (a small module: each spawned rank imports only this)."""

from __future__ import annotations

import json
import math

import torch
import torch.distributed as dist

from compt.evaluation.metrics import TaskMetrics
from compt.tasks import get_task


def metrics_on_rank(rank: int, port: int, out: str) -> None:
    """Half of each task's rows, as the evaluation sharding gives them; rank 0 writes the synced result."""
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    metrics = TaskMetrics([get_task("squad"), get_task("multirc")])
    texts, answers = [["cat", "dog"], ["bird"]][rank], [[["cat"], ["a dog"]], [["fish"]]][rank]
    nan = torch.full((len(texts),), math.nan)
    metrics.update(0, nan, nan, valid=torch.ones(len(texts), dtype=torch.bool), texts=texts, answers=answers)
    # question 5's two answers are split over the ranks, one of them wrong: the question is wrong
    preds, gold, groups = [([1.0, 1.0], [1.0, 1.0], [5, 7]), ([0.0], [1.0], [5])][rank]
    metrics.update(1, torch.tensor(preds), torch.tensor(gold), groups=torch.tensor(groups))
    result = metrics.compute()
    if rank == 0:
        with open(out, "w") as handle:
            json.dump(result, handle)
    dist.destroy_process_group()
