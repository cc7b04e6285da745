"""Per-task metrics as torchmetrics (synced across DDP ranks by torchmetrics), docs/method.md §6.

Values are reported in percent (0-100), like the paper's tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn
from torchmetrics import MeanSquaredError, Metric, PearsonCorrCoef, SpearmanCorrCoef, SumMetric
from torchmetrics.classification import (
    BinaryF1Score,
    BinaryMatthewsCorrCoef,
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassMatthewsCorrCoef,
)

from compt.tasks import TaskSpec


def primary_metric(task: TaskSpec, compat: bool = False) -> str:
    """The metric that enters "avg": the task's first metric, or with ``compat`` the paper's reading
    (``task.compat_metric``: accuracy for classification, spearman for regression)."""
    return task.compat_metric if compat else task.metrics[0]  # type: ignore[return-value]


def _metric(name: str, task: TaskSpec) -> Metric:
    n = task.num_labels if not task.is_regression else 0
    if name == "accuracy":
        return MulticlassAccuracy(num_classes=n, average="micro")
    if name == "matthews":
        return BinaryMatthewsCorrCoef() if n == 2 else MulticlassMatthewsCorrCoef(num_classes=n)
    if name == "f1":
        return BinaryF1Score() if n == 2 else MulticlassF1Score(num_classes=n, average="macro")
    if name == "pearson":
        return PearsonCorrCoef()
    if name == "spearman":
        return SpearmanCorrCoef()
    if name == "mse":
        return MeanSquaredError()
    raise ValueError(f"task {task.name!r}: unknown metric {name!r}")


def invalid_substitute(task: TaskSpec, gold: Tensor) -> Tensor:
    """What an invalid prediction is scored as: a wrong class (``(gold + 1) mod C``), or for regression
    ``task.invalid_score`` (the middle of the range; −1 under the authors' answer parsing)."""
    if task.is_regression:
        return torch.full_like(gold, task.invalid_score)
    return (gold + 1) % task.num_labels


def _defined(value: Tensor) -> float:
    """A metric's value, with undefined correlations (constant predictions give NaN) read as 0."""
    number = float(value.item())
    return 0.0 if number != number else number


def _mean(values: Iterable[float]) -> float:
    """The unweighted mean (NaN when there is nothing to average)."""
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


class TaskMetrics(nn.Module):
    """All tasks' metrics plus counts of evaluated and invalid examples.

    ``update(task_index, predictions, gold)`` takes ``predictions (n,)`` float with NaN for invalid outputs
    and ``gold (n,)`` float (class ids or scores) for the examples of one task.
    """

    def __init__(self, tasks: Sequence[TaskSpec], compat: bool = False) -> None:
        super().__init__()
        self.tasks = list(tasks)
        self.compat = compat
        self.metrics = nn.ModuleList(
            nn.ModuleDict({name: _metric(name, task) for name in self._names(task)}) for task in self.tasks
        )
        self.counts = nn.ModuleList(SumMetric() for _ in self.tasks)
        self.invalid = nn.ModuleList(SumMetric() for _ in self.tasks)

    @staticmethod
    def _names(task: TaskSpec) -> list[str]:
        """The task's configured metrics and the paper's reading (``compat_metric``), each once."""
        return list(dict.fromkeys([*task.metrics, task.compat_metric]))

    def update(self, task_index: int, predictions: Tensor, gold: Tensor) -> None:
        task = self.tasks[task_index]
        invalid = torch.isnan(predictions)
        preds = torch.where(invalid, invalid_substitute(task, gold), predictions)
        for metric in self.metrics[task_index].values():
            if task.is_regression:
                metric.update(preds.float(), gold.float())
            else:
                metric.update(preds.long(), gold.long())
        self.counts[task_index].update(torch.tensor(float(len(gold)), device=gold.device))
        self.invalid[task_index].update(invalid.sum().float())

    def update_batch(self, task_ids: Tensor, predictions: Tensor, gold: Tensor) -> None:
        """Route a mixed-task batch to each task's metrics."""
        for index in torch.unique(task_ids).tolist():
            rows = task_ids == index
            self.update(index, predictions[rows], gold[rows])

    def compute(self) -> dict[str, object]:
        """Both readings of every evaluated task (tasks with no evaluated example are left out)::

            {"tasks": {name: {metric: pct}}, "primary": {name: pct}, "avg": pct,
             "primary_paper": {name: pct}, "avg_paper": pct, "counts": {name: n}, "invalid": {name: n}}

        ``primary``/``avg``: the configured primary metric (``compat``: the paper's reading);
        ``primary_paper``/``avg_paper``: always the paper's reading (accuracy, stsb spearman).
        """
        per_task, primary, paper, counts, invalid = {}, {}, {}, {}, {}
        for i, task in enumerate(self.tasks):
            n = int(self.counts[i].compute().item())
            if n == 0:
                continue
            values = {name: 100.0 * _defined(m.compute()) for name, m in self.metrics[i].items()}
            per_task[task.name] = values
            primary[task.name] = values[primary_metric(task, self.compat)]
            paper[task.name] = values[primary_metric(task, compat=True)]
            counts[task.name] = n
            invalid[task.name] = int(self.invalid[i].compute().item())
        return {
            "tasks": per_task,
            "primary": primary,
            "avg": _mean(primary.values()),
            "primary_paper": paper,
            "avg_paper": _mean(paper.values()),
            "counts": counts,
            "invalid": invalid,
        }

    def reset(self) -> None:
        for group in (*self.metrics, self.counts, self.invalid):
            for metric in group.values() if isinstance(group, nn.ModuleDict) else group:
                metric.reset()
