"""``report.html``: one self-contained page (images embedded as base64) with every table and plot."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from html import escape
from pathlib import Path

from compt.atomic import write_text_atomic
from compt.report.aggregate import DivergedRun, MissingJob
from compt.report.plots import PlotResult
from compt.report.tables import ELSEWHERE, Table, cell_text

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 0.3em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th.label, td.label { text-align: left; background: #f6f6f6; }
tr.paper td { color: #555; } tr.delta td { color: #07c; border-bottom: 2px solid #999; }
p.note { font-size: 0.85em; color: #555; font-style: italic; margin: 0; }
figure { display: inline-block; margin: 0.5em 1em 1em 0; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.85em; color: #555; }
"""


def table_html(table: Table) -> str:
    """One :class:`Table` as an HTML table with its title and notes."""
    head = "".join(f'<th class="label">{escape(k)}</th>' for k in table.label_keys)
    head += "".join(f"<th>{escape(c)}</th>" for c in table.columns)
    body = []
    for label, cells in table.rows:
        kind = {"paper": "paper", "Δ": "delta"}.get(label.get("source", ""), "")
        tds = "".join(f'<td class="label">{escape(label[k])}</td>' for k in table.label_keys)
        tds += "".join(f"<td>{escape(cell_text(cells.get(c)))}</td>" for c in table.columns)
        body.append(f'<tr class="{kind}">{tds}</tr>')
    notes = "".join(f'<p class="note">{escape(n)}</p>' for n in table.notes)
    return f"<h3>{escape(table.title)}</h3>\n<table><tr>{head}</tr>\n" + "\n".join(body) + f"</table>{notes}"


def image_html(path: Path, out_dir: Path) -> str:
    """A figure with the PNG embedded (``data:`` URI) and a caption linking the file (relative path)."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    rel = path.relative_to(out_dir).as_posix()
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{escape(rel)}">'
        f'<figcaption><a href="{escape(rel)}">{escape(rel)}</a></figcaption></figure>'
    )


def write_html(
    path: Path,
    title: str,
    summary: Sequence[str],
    tables: Sequence[Table],
    comparisons: Sequence[Table],
    comparison_note: str | None,
    plots: Sequence[PlotResult],
    missing: Sequence[MissingJob],
    diverged: Sequence[DivergedRun] = (),
    analyses: Sequence[Table] = (),
) -> Path:
    """Write the page to ``path`` (images are read from their files and embedded)."""
    out_dir = path.parent
    parts = [
        f"<h1>{escape(title)}</h1>",
        "<ul>" + "".join(f"<li>{escape(s)}</li>" for s in summary) + "</ul>",
    ]
    parts += ["<h2>Results</h2>", *(table_html(t) for t in tables)]
    parts.append("<h2>Comparison with the paper</h2>")
    parts += [table_html(t) for t in comparisons] or [f"<p>{escape(comparison_note or '')}</p>"]
    if analyses:
        parts += ["<h2>Analyses (paper Tables 5, 6, A1; Fig. A1)</h2>", *(table_html(t) for t in analyses)]
    if missing:
        items = "".join(f"<li><code>{escape(str(m.path))}</code>: {escape(m.reason)}</li>" for m in missing)
        parts.append(f"<h2>Missing jobs ({len(missing)})</h2><ul>{items}</ul>")
    if diverged:
        items = "".join(f"<li><code>{escape(str(d.path))}</code>: {escape(d.reason)}</li>" for d in diverged)
        parts.append(f"<h2>Diverged runs ({len(diverged)}, not averaged)</h2><ul>{items}</ul>")
    parts.append("<h2>Plots</h2>")
    for plot in plots:
        if plot.files:
            parts.append(
                f"<h3>{escape(plot.title)}</h3>" + "".join(image_html(f, out_dir) for f in plot.files)
            )
    skipped = [p for p in plots if p.skipped]
    if skipped:
        items = "".join(f"<li>{escape(p.title)}: {escape(p.skipped or '')}</li>" for p in skipped)
        parts.append(f"<h3>Skipped plots</h3><ul>{items}</ul>")
    page = (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n"
    )
    return write_text_atomic(path, page, elsewhere=ELSEWHERE)
