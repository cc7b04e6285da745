"""``build_report``: sweep folders in, tables + comparisons + plots + ``report.md`` + ``report.html`` out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from compt.atomic import make_folder, write_text_atomic
from compt.report.aggregate import Group, Scan, group_runs, scan
from compt.report.html import write_html
from compt.report.plots import PlotResult, make_plots
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
        "glue (Tables 1/3) or set2 (Tables 2/4) with k in 8/16/32 (or 5000 for Tables 3/4)."
    )


def summary_lines(result: Scan, groups: Sequence[Group]) -> list[str]:
    roots = ", ".join(str(r) for r in result.roots)
    return [
        f"sweep folder(s): {roots}",
        f"{len(result.runs)} complete run(s) in {len(groups)} group(s) (settings minus seed)",
        f"{len(result.missing)} job(s) without a complete results.json",
        f"{len(result.diverged)} diverged run(s), listed apart and never averaged",
    ]


def markdown_report(
    summary: Sequence[str],
    tables: Sequence[Table],
    comparisons: Sequence[Table],
    note: str | None,
    plots: Sequence[PlotResult],
    result: Scan,
) -> str:
    """The report as Markdown (printed by ``compt report`` and written to ``report.md``)."""
    lines = [f"# {TITLE}", "", *(f"- {s}" for s in summary), "", "## Results", ""]
    for table in tables:
        lines += [to_markdown(table), ""]
    lines += ["## Comparison with the paper", ""]
    lines += [x for t in comparisons for x in (to_markdown(t), "")] or [note or "", ""]
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
    comparisons = [c for t in tables for c in paper_comparisons(t, groups)]
    note = comparison_note(tables, comparisons)
    files = [f for t in [*tables, *comparisons] for f in write_table(t, out)]
    made = make_plots(groups, out / PLOTS_DIR) if plots else []
    summary = summary_lines(result, groups)
    markdown = markdown_report(summary, tables, comparisons, note, made, result)
    write_text_atomic(out / "report.md", markdown, elsewhere=ELSEWHERE)
    html = write_html(
        out / "report.html", TITLE, summary, tables, comparisons, note, made, result.missing, result.diverged
    )
    files += [out / "report.md", html, *(f for p in made for f in p.files)]
    return Report(out, result, groups, tables, comparisons, made, markdown, html, files)
