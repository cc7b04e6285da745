"""Per-task metrics as torchmetrics (synced across DDP ranks by torchmetrics), docs/method.md §6.

Values are reported in percent (0-100), like the paper's tables. Answers scored as text (extractive QA,
record) use torchmetrics' ``SQuAD`` metric: the official SQuAD v1.1 normalisation (lower case, no punctuation,
no articles, single spaces), exact match and token F1, each the maximum over the row's gold answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric, MeanSquaredError, Metric, PearsonCorrCoef, SpearmanCorrCoef, SumMetric
from torchmetrics.classification import (
    BinaryF1Score,
    BinaryMatthewsCorrCoef,
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassMatthewsCorrCoef,
)
from torchmetrics.text import SQuAD

from compt.tasks import TaskSpec


def primary_metric(task: TaskSpec, compat: bool = False) -> str:
    """The metric that enters "avg": the task's first metric, or with ``compat`` the paper's reading
    (``task.compat_metric``: accuracy for classification, spearman for regression)."""
    return task.compat_metric if compat else task.metrics[0]  # type: ignore[return-value]


class AnswerMatch(SQuAD):
    """One reading of torchmetrics' ``SQuAD`` metric (``exact_match`` or ``f1``) over predicted texts and each
    row's gold answers, as a fraction (0-1) like the other metrics here."""

    def __init__(self, reading: str) -> None:
        super().__init__()
        self.reading = reading

    def update(self, texts: Sequence[str], answers: Sequence[Sequence[str]]) -> None:  # type: ignore[override]
        """``texts``: one predicted answer per row; ``answers``: every gold answer text of each row."""
        ids = [str(i) for i in range(len(texts))]
        super().update(
            [{"prediction_text": text, "id": i} for text, i in zip(texts, ids)],
            [
                {"answers": {"text": list(gold), "answer_start": [0] * len(gold)}, "id": i}
                for gold, i in zip(answers, ids)
            ],
        )

    def compute(self) -> Tensor:  # type: ignore[override]
        return super().compute()[self.reading] / 100.0


class GroupExactMatch(Metric):
    """Question-level exact match (MultiRC's EM): the share of groups (questions) whose rows (answers) are all
    predicted right. ``update(correct (n,) bool, groups (n,) long)``; the rows of a group may come from any batch
    or DDP rank."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("correct", default=[], dist_reduce_fx="cat")
        self.add_state("groups", default=[], dist_reduce_fx="cat")

    def update(self, correct: Tensor, groups: Tensor) -> None:  # type: ignore[override]
        self.correct.append(correct.bool())
        self.groups.append(groups.long())

    def compute(self) -> Tensor:
        correct = torch.cat(self.correct) if isinstance(self.correct, list) else self.correct
        groups = torch.cat(self.groups) if isinstance(self.groups, list) else self.groups
        if groups.numel() == 0:
            return torch.tensor(float("nan"))
        keys, inverse = torch.unique(groups, return_inverse=True)
        wrong = torch.zeros(len(keys), device=groups.device).index_add_(0, inverse, (~correct).float())
        return (wrong == 0).float().mean()


def _metric(name: str, task: TaskSpec) -> Metric:
    if task.kind == "text":
        return AnswerMatch("exact_match" if name == "em" else "f1")
    if task.kind == "choice":
        return (
            MeanMetric()
        )  # accuracy: the mean of right (1) / wrong (0) choices, any number of choices per row
    n = task.num_labels if not task.is_regression else 0
    if name == "em":
        return GroupExactMatch()
    if name == "f1a":
        return BinaryF1Score()
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
    if task.kind != "classification":
        return torch.full_like(gold, -1.0)  # no choice's index
    return (gold + 1) % task.num_labels


def scored_texts(
    task: TaskSpec,
    predictions: Tensor,
    invalid: Tensor,
    texts: Sequence[str] | None,
    choices: Sequence[Sequence[str]] | None,
) -> list[str]:
    """The answer each row is scored as: the predicted text, or for a task with per-row choices the choice the
    prediction names (``predictions`` holds its index) and ``""`` for an invalid one."""
    if texts is None:
        raise ValueError(f"task {task.name!r} is scored as text: pass the predicted texts")
    if not task.choices:
        return list(texts)
    return [
        "" if bad else choices[row][int(value)]  # type: ignore[index]
        for row, (value, bad) in enumerate(zip(predictions.tolist(), invalid.tolist()))
    ]


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

    ``update(task_index, predictions, gold)`` takes ``predictions (n,)`` float with NaN where there is no answer
    (scored as wrong) and ``gold (n,)`` float (class ids, choice indices or scores) for the examples of one task;
    a text task also needs ``texts`` (the predicted answers) and ``answers`` (each row's gold answers), with
    per-row ``choices`` when it has them (an answer is then the choice it names, a missing one the empty
    answer); a task with question groups ``groups (n,)``. ``valid (n,)`` bool: which predictions were answers as
    generated (default: not NaN); the others are counted in ``invalid`` (a generated answer that named none of
    the row's choices and was replaced by the model's ranked choice is scored as that choice, and counted).
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

    def update(
        self,
        task_index: int,
        predictions: Tensor,
        gold: Tensor,
        *,
        valid: Tensor | None = None,
        texts: Sequence[str] | None = None,
        answers: Sequence[Sequence[str]] | None = None,
        choices: Sequence[Sequence[str]] | None = None,
        groups: Tensor | None = None,
    ) -> None:
        task = self.tasks[task_index]
        missing = torch.isnan(predictions)
        invalid = missing if valid is None else ~valid.bool()
        preds = torch.where(missing, invalid_substitute(task, gold), predictions)
        for name, metric in self.metrics[task_index].items():
            if task.kind == "text":
                metric.update(scored_texts(task, predictions, missing, texts, choices), answers)
            elif task.kind == "choice":
                metric.update((preds == gold).float())
            elif name == "em":
                metric.update(preds.long() == gold.long(), groups)
            elif task.is_regression:
                metric.update(preds.float(), gold.float())
            else:
                metric.update(preds.long(), gold.long())
        self.counts[task_index].update(torch.tensor(float(len(gold)), device=gold.device))
        self.invalid[task_index].update(invalid.sum().float())

    def update_batch(self, task_ids: Tensor, predictions: Tensor, gold: Tensor, **per_row: Any) -> None:
        """Route a mixed-task batch to each task's metrics; ``per_row``: :meth:`update`'s keyword arguments for
        the whole batch (tensors or lists of B entries, None where absent)."""
        for index in torch.unique(task_ids).tolist():
            rows = task_ids == index
            picked = rows.nonzero().flatten().tolist()
            extras = {
                key: value[rows] if isinstance(value, Tensor) else [value[i] for i in picked]
                for key, value in per_row.items()
                if value is not None
            }
            self.update(index, predictions[rows], gold[rows], **extras)

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
