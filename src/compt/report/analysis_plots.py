"""Plots of the paper's single-run analyses: Fig. 6 (isolated prompts under constant vs learned weights, with the
learned router logits) and Fig. A1 (every task answered with every task's prompt). Registered beside the sweep
plots of :mod:`compt.report.plots` (:data:`ANALYSIS_PLOTS`), made only when the data supports them."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from compt.report.aggregate import Group, group_key, series_label, slug, varying_keys
from compt.report.analyses import cross_prompt_tables
from compt.report.plots import PlotSkipped, _new_figure, _save, heatmap, mask_matrix, value

LEARN = "router.learn"


def mean_logits(group: Group) -> np.ndarray | None:
    """The learned router logits W, task × source, mean over the group's seeds (None when no run has them)."""
    matrices = [
        [r.results["router_logits"][t] for t in group.tasks]
        for r in group.runs
        if r.results.get("router_logits")
    ]
    shapes = {np.shape(m) for m in matrices}
    return np.mean(np.array(matrices, dtype=float), 0) if matrices and len(shapes) == 1 else None


def constant_learned_pairs(groups: Sequence[Group]) -> list[tuple[Group, Group]]:
    """``(constant, learned)`` groups evaluated under several masks whose other settings are equal."""
    masked = [g for g in groups if any(len(r.results.get("masks") or {}) > 1 for r in g.runs)]
    by_rest: dict[str, dict[bool, Group]] = {}
    for g in masked:
        rest = {k: v for k, v in g.settings.items() if k != LEARN}
        by_rest.setdefault(group_key(rest), {})[value(g, LEARN).lower() == "true"] = g
    return [(pair[False], pair[True]) for pair in by_rest.values() if len(pair) == 2]


def plot_fig6(groups: Sequence[Group], out: Path) -> list[Path]:
    """Fig. 6: task × mask scores with constant weights (left) and learned weights (middle), and the learned
    router logits (right), one figure per pair of groups that differ only in ``router.learn``."""
    pairs = constant_learned_pairs(groups)
    if not pairs:
        raise PlotSkipped(
            "no constant- and learned-weight groups (router.learn=false/true) with otherwise equal settings "
            "were evaluated under several masks"
        )
    keys = [k for k in varying_keys(groups) if k != LEARN]
    files = []
    for constant, learned in pairs:
        logits = mean_logits(learned)
        label = series_label(constant.settings, [k for k in keys if k in constant.settings])
        rows, masks, _ = mask_matrix(constant)
        figure, axes = _new_figure(
            width=max(4.5, 1.5 + 0.8 * len(masks)),
            height=1.4 + 0.45 * len(rows),
            ncols=3 if logits is not None else 2,
        )
        for ax, group, title in (
            (axes[0, 0], constant, "constant weights"),
            (axes[0, 1], learned, "learned weights"),
        ):
            task_rows, mask_columns, matrix = mask_matrix(group)
            heatmap(ax, matrix, task_rows, mask_columns)
            ax.set_title(title, fontsize=9)
        if logits is not None:
            sources = [f"src{i}" for i in range(logits.shape[1])]
            heatmap(axes[0, 2], logits, learned.tasks, sources, fmt="{:.2f}")
            axes[0, 2].set_title("learned router logits W (mean over seeds)", fontsize=9)
        figure.suptitle(f"isolated prompts, constant vs learned weights: {label}", fontsize=9)
        files.append(_save(figure, out / f"fig6_{slug(label)}.png"))
    return files


def plot_cross_prompts(groups: Sequence[Group], out: Path) -> list[Path]:
    """Fig. A1: evaluated task × the task whose prompt answered it (mean over seeds), one figure per group."""
    tables = cross_prompt_tables(groups)
    if not tables:
        raise PlotSkipped("no run recorded cross-task prompt scores (eval.cross_prompts=rank|generate)")
    files = []
    for table in tables:
        rows = [label["task"] for label, _ in table.rows]
        matrix = np.array([[cells[c].mean for c in table.columns] for _, cells in table.rows])
        figure, axes = _new_figure(width=1.8 + 0.8 * len(table.columns), height=1.6 + 0.45 * len(rows))
        heatmap(axes[0, 0], matrix, rows, table.columns)
        axes[0, 0].set_xlabel("prompt of task")
        axes[0, 0].set_ylabel("evaluated task")
        axes[0, 0].set_title("\n".join(textwrap.wrap(table.title, 60)), fontsize=7)
        files.append(_save(figure, out / f"{table.name}.png"))
    return files


#: (name, title, function) of the analysis plots, in report order (after :data:`compt.report.plots.PLOTS`)
ANALYSIS_PLOTS: list[tuple[str, str, Callable[[Sequence[Group], Path], list[Path]]]] = [
    ("fig6", "Isolated prompts, constant vs learned weights, and the learned logits (Fig. 6)", plot_fig6),
    ("cross_prompts", "Every task with every task's prompt (Fig. A1)", plot_cross_prompts),
]
