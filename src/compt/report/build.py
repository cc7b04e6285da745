"""``build_report``: sweep folders in, tables + comparisons + plots + ``report.md`` + ``report.html`` out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from compt.atomic import make_folder, write_text_atomic
from compt.report.aggregate import Group, Scan, group_runs, scan
from compt.report.analyses import (
    CONFUSIONS_FILE,
    PAPER_CONFUSION_TASKS,
    confusion_tables,
    cross_prompt_tables,
    write_confusions,
)
from compt.report.analysis_plots import ANALYSIS_PLOTS
from compt.report.html import write_html
from compt.report.plots import PLOTS, PlotResult, make_plots
from compt.report.tables import ELSEWHERE, Table, paper_comparisons, results_tables, to_markdown, write_table

PLOTS_DIR = "plots"
TITLE = "compt report"


@dataclass
class Report:
    """Everything a report wrote, for callers and tests."""

    out: Path
    scan: Scan
    groups: list[Group]
    tables: list[Table]
    comparisons: list[Table]
    confusions: list[Table]
    """per-mask answer × gold counts (paper Tables 5, 6, A1): ours, and the published ones next to theirs"""
    cross_prompts: list[Table]
    """task × prompt matrices (paper Fig. A1)"""
    plots: list[PlotResult]
    markdown: str
    html: Path
    files: list[Path]


def comparison_note(tables: Sequence[Table], comparisons: Sequence[Table]) -> str | None:
    """Why nothing was compared with the paper (None when something was)."""
    if comparisons:
        return None
    task_sets = "; ".join(", ".join(c for c in t.columns[:-1]) for t in tables)
    return (
        f"No published table matches these runs (tasks: {task_sets}). The paper's tables need the task set "
        "glue (Tables 1/3, Fig. 4) or set2 (Tables 2/4; with set2_mnli, Table 7) with k in 8/16/32 (or 5000 "
        "for Tables 3/4; Fig. 4: msum/mcat at k=16 evaluated under the src masks)."
    )


def summary_lines(result: Scan, groups: Sequence[Group]) -> list[str]:
    roots = ", ".join(str(r) for r in result.roots)
    return [
        f"sweep folder(s): {roots}",
        f"{len(result.runs)} complete run(s) in {len(groups)} group(s) (settings minus seed)",
        f"{len(result.missing)} job(s) without a complete results.json",
        f"{len(result.diverged)} diverged run(s), listed apart and never averaged",
    ]


def in_report(confusions: Sequence[Table]) -> list[Table]:
    """The confusion tables shown in report.md / report.html: the paper's tasks (Tables 5, 6, A1) and the
    published tables; every one is in confusions.md."""
    tasks = tuple(f"_{task}" for task in PAPER_CONFUSION_TASKS)
    return [t for t in confusions if t.name.startswith("paper_") or t.name.endswith(tasks)]


def analyses_markdown(confusions: Sequence[Table], cross_prompts: Sequence[Table]) -> list[str]:
    """The analyses section of report.md (empty when the runs support none)."""
    lines: list[str] = []
    if confusions:
        shown = in_report(confusions)
        lines += ["## Answers per mask (paper Tables 5, 6, A1)", ""]
        lines += [x for t in shown for x in (to_markdown(t), "")]
        lines += [f"Every task's tables ({len(confusions)}): {CONFUSIONS_FILE}.md, {CONFUSIONS_FILE}.csv", ""]
    if cross_prompts:
        lines += ["## Task × prompt (paper Fig. A1)", ""]
        lines += [x for t in cross_prompts for x in (to_markdown(t), "")]
    return lines


def markdown_report(
    summary: Sequence[str],
    tables: Sequence[Table],
    comparisons: Sequence[Table],
    note: str | None,
    plots: Sequence[PlotResult],
    result: Scan,
    analyses: Sequence[str] = (),
) -> str:
    """The report as Markdown (printed by ``compt report`` and written to ``report.md``)."""
    lines = [f"# {TITLE}", "", *(f"- {s}" for s in summary), "", "## Results", ""]
    for table in tables:
        lines += [to_markdown(table), ""]
    lines += ["## Comparison with the paper", ""]
    lines += [x for t in comparisons for x in (to_markdown(t), "")] or [note or "", ""]
    lines += analyses
    if result.missing:
        lines += [f"## Missing jobs ({len(result.missing)})", ""]
        lines += [f"- `{m.path}`: {m.reason}" for m in result.missing] + [""]
    if result.diverged:
        lines += [f"## Diverged runs ({len(result.diverged)}, not averaged)", ""]
        lines += [f"- `{d.path}`: {d.reason}" for d in result.diverged] + [""]
    lines += ["## Plots", ""]
    for plot in plots:
        if plot.files:
            lines.append(f"- {plot.title}: " + ", ".join(f"{PLOTS_DIR}/{f.name}" for f in plot.files))
        else:
            lines.append(f"- skipped {plot.title}: {plot.skipped}")
    return "\n".join(lines) + "\n"


def build_report(
    sweep_dirs: Sequence[str | Path], out: str | Path, plots: bool = True, progress: bool | None = None
) -> Report:
    """Read the sweeps, write every table/plot under ``out`` and return what was written.

    Raises:
        NoResultsError: a folder holds no complete result.
    """
    result = scan(sweep_dirs, progress=progress)
    out = make_folder(out, ELSEWHERE)
    groups = group_runs(result.runs)
    tables = results_tables(groups)
    comparisons = paper_comparisons(groups)
    note = comparison_note(tables, comparisons)
    confusions = confusion_tables(groups)
    cross = cross_prompt_tables(groups)
    files = [f for t in [*tables, *comparisons, *cross] for f in write_table(t, out)]
    files += write_confusions(confusions, out)
    made = make_plots(groups, out / PLOTS_DIR, [*PLOTS, *ANALYSIS_PLOTS]) if plots else []
    summary = summary_lines(result, groups)
    analyses = analyses_markdown(confusions, cross)
    markdown = markdown_report(summary, tables, comparisons, note, made, result, analyses)
    write_text_atomic(out / "report.md", markdown, elsewhere=ELSEWHERE)
    html = write_html(
        out / "report.html",
        TITLE,
        summary,
        tables,
        comparisons,
        note,
        made,
        result.missing,
        result.diverged,
        analyses=[*in_report(confusions), *cross],
    )
    files += [out / "report.md", html, *(f for p in made for f in p.files)]
    return Report(out, result, groups, tables, comparisons, confusions, cross, made, markdown, html, files)
