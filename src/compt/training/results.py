"""The one-screen summary a finished run prints (the files themselves: :mod:`compt.runs`)."""

from __future__ import annotations

from typing import Any


def summary_table(results: dict[str, Any]) -> str:
    """A one-screen Markdown summary: per-task metrics, the primary metric and the paper's reading (accuracy;
    stsb spearman), invalid counts, and both averages."""
    metrics, counts, invalid = results["metrics"], results["counts"], results["invalid"]
    paper = results.get("primary_paper", {})
    lines = [
        f"method={results['method']} k={results['k']} seed={results['seed']} "
        f"eval={results['eval_mode']} steps={results['global_step']}",
        "",
        "| task | metrics | primary | paper reading | n | invalid |",
        "|---|---|---|---|---|---|",
    ]
    for task, values in metrics.items():
        shown = ", ".join(f"{k} {v:.1f}" for k, v in values.items())
        lines.append(
            f"| {task} | {shown} | {results['primary'][task]:.1f} | {paper.get(task, float('nan')):.1f} "
            f"| {counts[task]} | {invalid[task]} |"
        )
    lines.append(
        f"| **avg** | | **{results['avg']:.1f}** | **{results.get('avg_paper', float('nan')):.1f}** | | |"
    )
    return "\n".join(lines)
