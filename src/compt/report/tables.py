"""Result tables like the paper's Tables 1/2 (rows method × k × other varying settings, columns tasks + Avg.),
their side-by-side comparison with the published numbers, and their Markdown / CSV / LaTeX renderings."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from compt.atomic import atomic_file, write_text_atomic
from compt.report.aggregate import AVG, PAPER_METRICS, Group, Stat, label_keys

#: how a user writes a report elsewhere (for the message of a failed write)
ELSEWHERE = "compt report ... --out DIR"
#: a table cell: a statistic over seeds, a number, a published number as printed (text), or empty
Cell = Stat | float | str | None


@dataclass
class Table:
    """A rendered-agnostic table: label columns, value columns and rows of cells."""

    name: str
    """file stem, e.g. ``results`` or ``paper_table1``"""
    title: str
    label_keys: list[str]
    columns: list[str]
    rows: list[tuple[dict[str, str], dict[str, Cell]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- building
def task_sets(groups: Sequence[Group]) -> dict[tuple[str, ...], list[Group]]:
    """Groups partitioned by their task list (one results table per distinct task set)."""
    out: dict[tuple[str, ...], list[Group]] = {}
    for g in groups:
        out.setdefault(tuple(g.tasks), []).append(g)
    return out


def results_tables(groups: Sequence[Group]) -> list[Table]:
    """One table per task set: each cell the primary metric's mean ± std (n) over the group's seeds."""
    by_tasks = task_sets(groups)
    tables = []
    for index, (tasks, members) in enumerate(by_tasks.items()):
        name = "results" if len(by_tasks) == 1 else f"results_{index + 1}"
        columns = [*tasks, AVG]
        keys = label_keys(members)
        table = Table(name, f"Results ({', '.join(tasks)}): mean ± std (n seeds)", keys, columns)
        table.rows = [(g.label(keys), {c: g.stat(c) for c in columns}) for g in members]
        table.notes = [describe_setup(members), describe_metrics(members)]
        tables.append(table)
    return tables


def describe_setup(groups: Sequence[Group]) -> str:
    """One line on what the numbers are: backbone(s), protocol(s), evaluation mode(s) and size(s)."""

    def values(getter) -> str:
        return ", ".join(sorted({str(getter(r.results)) for g in groups for r in g.runs}))

    return (
        f"backbone: {values(lambda r: config_value(r, 'model.name'))}; "
        f"protocol: {values(lambda r: r.get('protocol', 'paper'))}; "
        f"eval.mode: {values(lambda r: r.get('eval_mode'))}; "
        f"eval.max_samples: {values(lambda r: config_value(r, 'eval.max_samples'))}; "
        "cells: primary metric (%) mean ± sample std (n seeds)"
    )


def describe_metrics(groups: Sequence[Group]) -> str:
    """The primary metric of each task as the runs computed it (``metrics.compat``: the paper's reading)."""
    names: dict[str, set[str]] = {}
    for run in (r for g in groups for r in g.runs):
        for task, values in (run.results.get("metrics") or {}).items():
            if values:
                paper = run.results.get("metrics_compat")
                names.setdefault(task, set()).add(_paper_metric(values) if paper else next(iter(values)))
    shown = "; ".join(f"{task} {'/'.join(sorted(metric))}" for task, metric in names.items())
    return f"primary metric per task: {shown}" if shown else "primary metric per task: (not recorded)"


def _paper_metric(values: dict[str, Any]) -> str:
    return next((m for m in PAPER_METRICS if m in values), next(iter(values)))


def config_value(results: dict[str, Any], dotted: str) -> Any:
    """A value of a run's resolved config by dotted key (None when absent)."""
    node: Any = results.get("config") or {}
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


# ---------------------------------------------------------------------------------------------- paper
@cache
def paper_numbers() -> dict[str, Any]:
    """The published numbers (``paper_numbers.yaml``): ``tables`` and ``confusions``."""
    text = resources.files("compt.report").joinpath("paper_numbers.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def paper_tables() -> list[dict[str, Any]]:
    """The published tables (and the numbers printed in Fig. 4)."""
    return paper_numbers()["tables"]


#: compt methods that stand for a paper row of another name (the authors' PT baseline is the paper's PT)
PAPER_METHOD_OF = {"pt_single": "pt"}
PAPER_READING = (
    "in the paper's reading: accuracy for every classification task (cola, mrpc, qqp included) and Spearman "
    "for stsb, whatever metrics.compat says; paper: T5-base, {evaluated}, greedy decoding; Δ = ours − paper"
)


def _row_matches(row: dict[str, Any], group: Group, table_tasks: Sequence[str]) -> bool:
    s = group.settings
    if set(group.tasks) != {*table_tasks, *row.get("extra_tasks", ())}:
        return False
    method = PAPER_METHOD_OF.get(s.get("method", ""), s.get("method"))
    if row["method"] != method:
        return False
    for key in ("k", "n_sources"):
        if key in row and str(row[key]) != s.get(key):
            return False
    if "mask" in row and not any(_masking_run(r.results, row["mask"]) for r in group.runs):
        return False
    if "router_learn" in row:
        learned = {config_value(r.results, "router.learn") for r in group.runs}
        return learned == {row["router_learn"]}
    return True


def _masking_run(results: dict[str, Any], mask: str) -> bool:
    """Whether a run was evaluated under ``mask`` as part of a masking analysis (several masks): a run's plain
    ``total`` is not a published masking figure's."""
    masks = results.get("masks") or {}
    return mask in masks and len(masks) > 1


def paper_comparisons(groups: Sequence[Group]) -> list[Table]:
    """Each published table some groups match (see ``paper_numbers.yaml``), side by side with them: rows
    ``ours`` (mean ± std (n)), ``paper`` and ``Δ`` (ours − paper) per matched row — ours always in the paper's
    reading (accuracy; stsb Spearman), since that is what its tables report, under the row's mask if it names
    one, and averaged over the table's tasks only (a run's extra tasks left out)."""
    out = []
    for paper in paper_tables():
        matched = [(g, r) for g in groups for r in paper["rows"] if _row_matches(r, g, paper["tasks"])]
        if not matched or (
            paper.get("only_with_extra_tasks") and not any(r.get("extra_tasks") for _, r in matched)
        ):
            continue
        members = list({id(g): g for g, _ in matched}.values())
        keys = label_keys(members) + (["mask"] if any("mask" in r for _, r in matched) else [])
        columns = [t for t in members[0].tasks if t in paper["tasks"]] + [AVG]
        compared = Table(
            f"paper_{paper['id']}",
            f"{paper['title']} vs these runs, in the paper's reading (accuracy; stsb Spearman)",
            [*keys, "source"],
            columns,
            notes=[describe_setup(members), PAPER_READING.format(evaluated=paper.get("evaluated", "?"))],
        )
        for group, row in matched:
            label = {**group.label(keys), **({"mask": row["mask"]} if "mask" in row else {})}
            mask = row.get("mask")
            ours = {c: group.stat(c, mask=mask, paper=True) for c in columns}
            if row.get("extra_tasks"):
                ours[AVG] = group.mean_of(paper["tasks"], mask=mask, paper=True)
            numbers = {**row["tasks"], AVG: row["avg"]}
            published: dict[str, Cell] = {c: str(float(v)) for c, v in numbers.items()}
            delta = {c: _delta(ours[c], numbers.get(c)) for c in columns}
            compared.rows += [
                ({**label, "source": "ours"}, ours),
                ({**label, "source": "paper"}, published),
                ({**label, "source": "Δ"}, delta),
            ]
        out.append(compared)
    return out


def _delta(ours: Stat, paper: float | None) -> float | None:
    if paper is None or math.isnan(ours.mean):
        return None
    return ours.mean - float(paper)


# ---------------------------------------------------------------------------------------------- rendering
def cell_text(cell: Cell, digits: int = 1, pm: str = "±") -> str:
    """``63.4 ± 1.2 (3)`` for a statistic, ``63.4`` for a number, empty for none."""
    if cell is None:
        return ""
    if isinstance(cell, Stat):
        if cell.n == 0:
            return "–"
        std = "–" if math.isnan(cell.std) else f"{cell.std:.{digits}f}"
        return f"{cell.mean:.{digits}f} {pm} {std} ({cell.n})"
    if isinstance(cell, str):  # a published number, as printed
        return cell
    return f"{cell:.{digits}f}"


def to_markdown(table: Table) -> str:
    header = [*table.label_keys, *table.columns]
    lines = [f"### {table.title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, cells in table.rows:
        values = [label[k] for k in table.label_keys] + [cell_text(cells.get(c)) for c in table.columns]
        lines.append("| " + " | ".join(values) + " |")
    lines += ["", *(f"_{note}_" for note in table.notes)]
    return "\n".join(lines)


def write_csv(table: Table, path: Path) -> Path:
    """One row per table row: the labels, then ``<column>_mean``, ``<column>_std``, ``<column>_n``."""
    with atomic_file(path, newline="", elsewhere=ELSEWHERE) as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [*table.label_keys, *(f"{c}_{part}" for c in table.columns for part in ("mean", "std", "n"))]
        )
        for label, cells in table.rows:
            values: list[Any] = [label[k] for k in table.label_keys]
            for column in table.columns:
                values += _csv_cell(cells.get(column))
            writer.writerow(values)
    return path


def _csv_cell(cell: Cell) -> list[Any]:
    if isinstance(cell, Stat):
        return ["" if math.isnan(x) else x for x in (cell.mean, cell.std)] + [cell.n]
    return ["" if cell is None else cell, "", ""]


def to_latex(table: Table) -> str:
    """A ``tabular`` in the paper's layout (booktabs rules), cells ``$63.4 \\pm 1.2$``."""
    header = [*table.label_keys, *table.columns]
    lines = [
        "% " + table.title,
        "\\begin{tabular}{" + "l" * len(table.label_keys) + "r" * len(table.columns) + "}",
        "\\toprule",
        " & ".join(_tex(h) for h in header) + " \\\\",
        "\\midrule",
    ]
    for label, cells in table.rows:
        values = [_tex(label[k]) for k in table.label_keys]
        values += [_tex_cell(cells.get(c)) for c in table.columns]
        lines.append(" & ".join(values) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def _tex(text: str) -> str:
    for char, escaped in (
        ("\\", "\\textbackslash{}"),
        ("_", "\\_"),
        ("%", "\\%"),
        ("&", "\\&"),
        ("#", "\\#"),
    ):
        text = text.replace(char, escaped)
    return text.replace("Δ", "$\\Delta$")


def _tex_cell(cell: Cell) -> str:
    if isinstance(cell, Stat):
        if cell.n == 0:
            return "--"
        if math.isnan(cell.std):
            return f"${cell.mean:.1f}$"
        return f"${cell.mean:.1f} \\pm {cell.std:.1f}$"
    return cell_text(cell)


def write_table(table: Table, out_dir: Path) -> list[Path]:
    """``<name>.md``, ``<name>.csv`` and ``<name>.tex`` in ``out_dir``."""
    md = out_dir / f"{table.name}.md"
    write_text_atomic(md, to_markdown(table) + "\n", elsewhere=ELSEWHERE)
    tex = out_dir / f"{table.name}.tex"
    write_text_atomic(tex, to_latex(table), elsewhere=ELSEWHERE)
    return [md, write_csv(table, out_dir / f"{table.name}.csv"), tex]
