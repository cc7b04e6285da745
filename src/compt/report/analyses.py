"""The paper's analyses of single runs, as tables: the per-mask prediction counts of Tables 5, 6 and A1 (from the
runs' stored predictions of every evaluated mask) and the task × prompt matrix of Fig. A1 (from results.json
``cross_prompts``, written by runs with ``eval.cross_prompts``).

A *confusion table* holds one block per mask: a row per distinct generated answer (invalid ones too, as the
paper's "not-uplicate"), a column per gold label, each cell the count over the group's seeds, and a ``recall``
row — per gold label, the share answered correctly (what the paper's tables call "precision") — with the
block's accuracy. Correct means what the metrics count: a valid answer parsed to the gold label.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compt.atomic import atomic_file, write_text_atomic
from compt.prompts.masks import mask_names
from compt.report.aggregate import Group, Stat, series_label, slug, varying_keys
from compt.report.tables import ELSEWHERE, Cell, Table, paper_numbers, to_markdown
from compt.runs import RunDir

#: the tasks of the paper's Tables 5, 6 and A1: their confusion tables also go into report.md
PAPER_CONFUSION_TASKS = ("mnli", "rte", "qqp")
ACCURACY = "acc."
RECALL = "recall"
EMPTY_ANSWER = "(empty)"
CONFUSIONS_FILE = "confusions"


@dataclass
class Confusion:
    """One group's counts for one task: ``counts[mask][(prediction, gold)]`` and the correct answers per gold."""

    group: Group
    label: str
    task: str
    gold_names: list[str]
    counts: dict[str, Counter]
    correct: dict[str, Counter]


# ---------------------------------------------------------------------------------------------- predictions
def masked_predictions(group: Group) -> list[dict[str, Any]]:
    """Every stored prediction of the group's runs that were evaluated under several masks (each row with its
    ``mask``); empty when no run kept more than one mask's predictions."""
    rows: list[dict[str, Any]] = []
    for run in group.runs:
        if len(run.results.get("masks") or {}) < 2:
            continue
        stored = RunDir(run.path).read_predictions()
        if len({r["mask"] for r in stored}) > 1:
            rows += stored
    return rows


def is_regression(rows: Sequence[dict[str, Any]]) -> bool:
    """Whether a task's answers are scores (every target text is a number, as stsb's "3.8")."""
    try:
        for row in rows:
            float(row.get("target") or "")
    except ValueError:
        return False
    return True


def has_label_words(rows: Sequence[dict[str, Any]]) -> bool:
    """Whether a task's answers are label words: every row has a gold class id, and none carries per-row
    ``choices`` or gold ``answers`` texts (copa, record, extractive QA: no fixed labels to tabulate)."""
    return all(r.get("gold") is not None and "choices" not in r and "answers" not in r for r in rows)


def confusions(groups: Sequence[Group]) -> list[Confusion]:
    """Per group and classification task (label words: not regression, per-row choices or text answers), the
    answer × gold counts of every mask its runs kept."""
    keys = varying_keys(groups)
    out = []
    for group in groups:
        rows = masked_predictions(group)
        label = series_label(group.settings, [k for k in keys if k in group.settings])
        for task in group.tasks:
            mine = [r for r in rows if r["task"] == task]
            if not mine or is_regression(mine) or not has_label_words(mine):
                continue
            names = {int(r["gold"]): r.get("target") or str(r["gold"]) for r in mine}
            gold = [names[i] for i in sorted(names)]
            counts: dict[str, Counter] = {}
            correct: dict[str, Counter] = {}
            for row in mine:
                name = names[int(row["gold"])]
                answer = row.get("prediction") or EMPTY_ANSWER
                counts.setdefault(row["mask"], Counter())[(answer, name)] += 1
                right = row.get("valid") and row.get("value") == row["gold"]
                correct.setdefault(row["mask"], Counter())[name] += bool(right)
            out.append(Confusion(group, label, task, gold, _in_mask_order(counts), correct))
    return out


def _in_mask_order(counts: dict[str, Counter]) -> dict[str, Counter]:
    n = max((int(m[3:]) + 1 for m in counts if m.startswith("src") and m[3:].isdigit()), default=0)
    order = [m for m in mask_names(n) if m in counts]
    return {m: counts[m] for m in order + sorted(set(counts) - set(order))}


def confusion_table(c: Confusion) -> Table:
    """One :class:`Confusion` as a table: a block per mask, rows ``(mask, answer)`` then ``(mask, recall)``."""
    seeds = len(c.group.runs)
    table = Table(
        f"confusion_{slug(c.label)}_{c.task}",
        f"{c.task}: answers per mask, {c.label} (counts over {seeds} seed(s))",
        ["mask", "prediction"],
        [*c.gold_names, ACCURACY],
    )
    for mask, counts in c.counts.items():
        answers = sorted({answer for answer, _ in counts})
        for answer in answers:
            table.rows.append(
                ({"mask": mask, "prediction": answer}, {g: str(counts[(answer, g)]) for g in c.gold_names})
            )
        totals = Counter()
        for (_, gold), n in counts.items():
            totals[gold] += n
        recall: dict[str, Cell] = {g: _percent(c.correct[mask][g], totals[g]) for g in c.gold_names}
        recall[ACCURACY] = _percent(sum(c.correct[mask].values()), sum(totals.values()))
        table.rows.append(({"mask": mask, "prediction": RECALL}, recall))
    table.notes = [
        "rows: the answer as generated (or ranked), columns: the gold label; recall: per gold label the share "
        "answered correctly (the paper's tables call it precision); acc.: the block's accuracy"
    ]
    return table


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "nan"


def paper_confusion_table(entry: dict[str, Any]) -> Table:
    """A published per-mask table (Tables 5, 6, A1) in the same layout, masks named as compt's."""
    gold = list(entry["gold"])
    table = Table(
        f"paper_{entry['id']}",
        f"{entry['title']} (paper, one run; compt's mask names)",
        ["mask", "prediction"],
        [*gold, ACCURACY],
    )
    for block in entry["blocks"]:
        mask = f"{block['mask']} ({block['paper']})"
        for answer, counts in block["rows"].items():
            table.rows.append(
                ({"mask": mask, "prediction": answer}, {g: str(n) for g, n in zip(gold, counts)})
            )
        recall: dict[str, Cell] = dict(zip(gold, block["recall"]))
        recall[ACCURACY] = str(block["accuracy"])
        table.rows.append(({"mask": mask, "prediction": RECALL}, recall))
    table.notes = ["the paper's 'precision' row is the recall row here; accuracy as printed"]
    return table


def confusion_tables(groups: Sequence[Group]) -> list[Table]:
    """Every confusion table of the groups, each published one (Tables 5, 6, A1) right after the first of ours
    with its task and method."""
    published = {(e["task"], e["method"]): e for e in paper_numbers().get("confusions", [])}
    out = []
    for c in confusions(groups):
        out.append(confusion_table(c))
        entry = published.pop((c.task, c.group.settings.get("method")), None)
        if entry is not None:
            out.append(paper_confusion_table(entry))
    return out


def write_confusions(tables: Sequence[Table], out_dir: Path) -> list[Path]:
    """``confusions.md`` (every table) and ``confusions.csv`` (one line per cell: table, mask, prediction,
    column, value); nothing when there are no tables."""
    if not tables:
        return []
    md = out_dir / f"{CONFUSIONS_FILE}.md"
    write_text_atomic(md, "\n\n".join(to_markdown(t) for t in tables) + "\n", elsewhere=ELSEWHERE)
    path = out_dir / f"{CONFUSIONS_FILE}.csv"
    with atomic_file(path, "w", ELSEWHERE, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["table", "mask", "prediction", "column", "value"])
        for table in tables:
            for label, cells in table.rows:
                for column in table.columns:
                    if cells.get(column) is not None:
                        writer.writerow(
                            [table.name, label["mask"], label["prediction"], column, cells[column]]
                        )
    return [md, path]


# ---------------------------------------------------------------------------------------------- task × prompt
def cross_prompt_tables(groups: Sequence[Group]) -> list[Table]:
    """Per group whose runs recorded ``cross_prompts``: rows the evaluated task, columns the task whose prompt
    answered it, each cell the primary metric's mean ± std (n seeds) (paper Fig. A1)."""
    keys = varying_keys(groups)
    out = []
    for group in groups:
        matrices = [r.results["cross_prompts"] for r in group.runs if r.results.get("cross_prompts")]
        if not matrices:
            continue
        label = series_label(group.settings, [k for k in keys if k in group.settings])
        prompts = list(matrices[0])
        table = Table(
            f"cross_prompts_{slug(label)}",
            f"Task × prompt (Fig. A1), {label}: rows the evaluated task, columns the task whose prompt answered it",
            ["task"],
            prompts,
        )
        for task in group.tasks:
            cells: dict[str, Cell] = {
                p: Stat.of(m.get(p, {}).get("primary", {}).get(task) for m in matrices) for p in prompts
            }
            table.rows.append(({"task": task}, cells))
        table.notes = [
            "cells: each task's primary metric (%) mean ± sample std (n seeds), under the main mask"
        ]
        out.append(table)
    return out
