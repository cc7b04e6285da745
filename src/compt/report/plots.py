"""The paper's figures from a sweep's groups, each made only when the data supports it.

Every plot function takes the groups and an output folder and returns the PNG files it wrote, or raises
:class:`PlotSkipped` with the reason. Figures are drawn on :class:`matplotlib.figure.Figure` objects with the
Agg canvas (no pyplot state, no display needed).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from compt.atomic import atomic_file
from compt.prompts.masks import mask_names
from compt.prompts.methods import has_source_prompts
from compt.report.aggregate import AVG, Group, Run, series_label, slug, varying_keys
from compt.report.tables import ELSEWHERE, config_value

#: at most this many panels in one figure (router weights per group)
MAX_PANELS = 12
DPI = 110


class PlotSkipped(Exception):
    """The data does not support this plot; the message says why."""


@dataclass
class PlotResult:
    """One plot kind: its files, or the reason it was skipped."""

    name: str
    title: str
    files: list[Path]
    skipped: str | None = None


# ---------------------------------------------------------------------------------------------- helpers
def value(group: Group, key: str) -> str:
    """A setting of the group: its override, else the first run's resolved config value."""
    if key in group.settings:
        return group.settings[key]
    return str(config_value(group.runs[0].results, key))


def distinct(groups: Sequence[Group], key: str) -> list[str]:
    return sorted({value(g, key) for g in groups}, key=_num_or_text)


def _num_or_text(text: str) -> tuple[int, float, str]:
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, 0.0, text)


def _new_figure(
    width: float = 6.4, height: float = 4.2, ncols: int = 1, nrows: int = 1, constrained: bool = False
) -> tuple[Figure, Any]:
    """A figure of ``nrows`` × ``ncols`` panels; ``constrained`` lays it out itself (a colour bar shared by
    several panels), then save it with ``_save(..., tight=False)``."""
    layout = "constrained" if constrained else None
    figure = Figure(figsize=(width * ncols, height * nrows), dpi=DPI, layout=layout)
    FigureCanvasAgg(figure)
    axes = figure.subplots(nrows, ncols, squeeze=False)
    return figure, axes


def _save(figure: Figure, path: Path, tight: bool = True) -> Path:
    if tight:  # (a figure made with constrained=True lays itself out)
        figure.tight_layout()
    with atomic_file(path, "wb", elsewhere=ELSEWHERE) as handle:
        figure.savefig(handle, format="png")
    return path


def _series(groups: Sequence[Group], exclude: Sequence[str]) -> dict[str, list[Group]]:
    """Groups split into plot series by every varying setting not in ``exclude``."""
    keys = [k for k in varying_keys(groups) if k not in exclude]
    out: dict[str, list[Group]] = {}
    for g in groups:
        out.setdefault(series_label({k: value(g, k) for k in keys}, keys), []).append(g)
    return out


def line_plot(
    groups: Sequence[Group],
    x_key: str,
    path: Path,
    title: str,
    exclude: Sequence[str] = (),
    log_x: bool = False,
    with_std_panel: bool = False,
) -> Path:
    """Avg. (mean over seeds, ±std shaded) against ``x_key``, one line per series of the other settings.

    ``with_std_panel`` adds the std itself on a second panel (paper Fig. 2, right).
    """
    figure, axes = _new_figure(ncols=2 if with_std_panel else 1)
    for label, members in _series(groups, [x_key, *exclude]).items():
        points = sorted(((float(value(g, x_key)), g.stat(AVG)) for g in members), key=lambda p: p[0])
        x = np.array([p[0] for p in points])
        mean = np.array([p[1].mean for p in points])
        std = np.nan_to_num(np.array([p[1].std for p in points]))
        (line,) = axes[0, 0].plot(x, mean, marker="o", label=label)
        axes[0, 0].fill_between(x, mean - std, mean + std, alpha=0.2, color=line.get_color())
        if with_std_panel:
            axes[0, 1].plot(x, std, marker="o", label=label, color=line.get_color())
    panels = [(axes[0, 0], "Avg. (mean ± std over seeds)")]
    if with_std_panel:
        panels.append((axes[0, 1], "std over seeds"))
    for ax, ylabel in panels:
        ax.set_xlabel(x_key)
        ax.set_ylabel(ylabel)
        if log_x:
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    figure.suptitle(title)
    return _save(figure, path)


def heatmap(
    ax: Any,
    matrix: np.ndarray,
    rows: Sequence[str],
    cols: Sequence[str],
    fmt: str = "{:.1f}",
    scale: tuple[float, float] | None = None,
) -> Any:
    """An annotated heatmap on ``ax`` (NaN cells left blank); returns the image. ``scale`` = (vmin, vmax)
    shared by several panels (then the caller draws one colour bar), else the matrix's own range and a bar."""
    vmin, vmax = scale if scale is not None else (None, None)
    image = ax.imshow(np.ma.masked_invalid(matrix), aspect="auto", cmap="viridis", vmin=vmin, vmax=vmax)
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    finite = matrix[np.isfinite(matrix)]
    low, high = scale if scale is not None else (finite.min(), finite.max()) if finite.size else (0.0, 0.0)
    middle = (low + high) / 2
    for (i, j), v in np.ndenumerate(matrix):
        if math.isfinite(v):
            ax.text(
                j,
                i,
                fmt.format(v),
                ha="center",
                va="center",
                fontsize=7,
                color="black" if v > middle else "white",
            )
    if scale is None:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return image


# ---------------------------------------------------------------------------------------------- plots
def with_sources(groups: Sequence[Group]) -> list[Group]:
    """The groups whose method has source prompts (where n_sources and the router mean something)."""
    return [g for g in groups if has_source_prompts(str(g.settings.get("method", "")))]


def plot_n_sources(groups: Sequence[Group], out: Path) -> list[Path]:
    """Fig. 2: Avg. against the number of source prompts (methods with sources)."""
    members = with_sources(groups)
    if len(distinct(members, "n_sources")) < 2:
        raise PlotSkipped("n_sources does not vary (among methods with source prompts)")
    path = out / "n_sources.png"
    return [line_plot(members, "n_sources", path, "Avg. vs number of source prompts", with_std_panel=True)]


def plot_router_learn(groups: Sequence[Group], out: Path) -> list[Path]:
    """Fig. 5: learned vs constant router weights, against k or n_sources when one of them varies."""
    members = with_sources(groups)
    if len(distinct(members, "router.learn")) < 2:
        raise PlotSkipped("router.learn does not vary (no constant-weights runs next to learned ones)")
    members = [_with(g, "router.learn", value(g, "router.learn")) for g in members]
    x_key = next((k for k in ("k", "n_sources") if len(distinct(members, k)) > 1), "router.learn")
    if x_key == "router.learn":  # no other axis: two points per method, constant (0) and learned (1)
        members = [_with(g, x_key, "1" if value(g, x_key).lower() == "true" else "0") for g in members]
    title = "Learned vs constant weights" + (
        " (router.learn: 0 = constant, 1 = learned)" if x_key == "router.learn" else ""
    )
    return [line_plot(members, x_key, out / "router_learn.png", title)]


def _with(group: Group, key: str, new: str) -> Group:
    return Group({**group.settings, key: new}, group.runs)


def plot_lr_private(groups: Sequence[Group], out: Path) -> list[Path]:
    """Fig. 7: Avg. against the private prompts' learning rate."""
    if len(distinct(groups, "optim.lr.private")) < 2:
        raise PlotSkipped("optim.lr.private does not vary")
    members = [g for g in groups if value(g, "optim.lr.private") not in ("None", "")]
    return [
        line_plot(
            members, "optim.lr.private", out / "lr_private.png", "Avg. vs private learning rate", log_x=True
        )
    ]


def _mask_order(groups: Sequence[Group]) -> list[str]:
    found = {m for g in groups for r in g.runs for m in (r.results.get("masks") or {})}
    n = max(int(value(g, "n_sources")) for g in groups)
    order = [m for m in mask_names(n) if m in found]
    return order + sorted(found - set(order))


def mask_matrix(group: Group) -> tuple[list[str], list[str], np.ndarray]:
    """``(rows, masks, matrix)``: the group's tasks plus Avg. × its masks, each cell the primary metric's mean
    over seeds."""
    masks = _mask_order([group])
    rows = [*group.tasks, AVG]
    return rows, masks, np.array([[group.stat(t, m).mean for m in masks] for t in rows])


def plot_masks(groups: Sequence[Group], out: Path) -> list[Path]:
    """Figs. 3/4/6: task × mask heatmap (mean over seeds; last row Avg.), one per group with several masks."""
    members = [g for g in groups if any(len(r.results.get("masks") or {}) > 1 for r in g.runs)]
    if not members:
        raise PlotSkipped(
            "no run was evaluated under several masks (eval.masks=[total,...] or compt evaluate)"
        )
    keys = varying_keys(groups)
    files = []
    for g in members:
        rows, masks, matrix = mask_matrix(g)
        label = series_label(g.settings, [k for k in keys if k in g.settings])
        figure, axes = _new_figure(width=max(5.0, 1.5 + 0.8 * len(masks)), height=1.2 + 0.45 * len(rows))
        heatmap(axes[0, 0], matrix, rows, masks)
        axes[0, 0].set_title(f"source masking: {label}", fontsize=8)
        files.append(_save(figure, out / f"masks_{slug(label)}.png"))
    return files


def router_matrix(run: Run, tasks: Sequence[str]) -> np.ndarray | None:
    """One run's evaluation-mode router weights as a (tasks, sources) matrix, or None (no router, or a task
    the run did not train)."""
    weights = run.results.get("router_weights") or {}
    if not weights or any(t not in weights for t in tasks):
        return None
    return np.array([weights[t] for t in tasks], dtype=float)


@dataclass
class RouterPanel:
    """One heat-map of :func:`plot_router_weights`: one run (a group's seed)."""

    group: Group
    seed: Any
    matrix: np.ndarray


def router_panels(groups: Sequence[Group]) -> dict[str, list[list[RouterPanel]]]:
    """Per method, one row of panels per group, one panel per seed (in seed order).

    Seeds are never averaged: a seed's ``src0`` is not the prompt another seed's ``src0`` is (sources are
    initialised at random and nothing ties their order across runs), so a mean over seeds would blur
    which tasks share a source into ~1/S.
    """
    out: dict[str, list[list[RouterPanel]]] = {}
    for g in groups:
        runs = sorted(g.runs, key=lambda r: _num_or_text(str(r.results.get("seed"))))
        row = [
            RouterPanel(g, r.results.get("seed"), m)
            for r in runs
            if (m := router_matrix(r, g.tasks)) is not None
        ]
        if row:
            out.setdefault(g.settings.get("method", "-"), []).append(row)
    return out


def shared_scale(matrices: Sequence[np.ndarray]) -> tuple[float, float]:
    """(vmin, vmax) over every finite value of ``matrices``: one colour scale for the panels of a figure."""
    values = np.concatenate([m[np.isfinite(m)] for m in matrices]) if matrices else np.array([])
    return (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)


def plot_router_weights(groups: Sequence[Group], out: Path) -> list[Path]:
    """Router weights (evaluation mode) as task × source heat-maps: per method, a row per group (k, ...) and
    a panel per seed (:func:`router_panels`), every panel of a figure on one colour scale. A method with more
    than :data:`MAX_PANELS` panels continues in ``router_<method>_2.png``, ..."""
    by_method = router_panels(groups)
    if not by_method:
        raise PlotSkipped(
            "no run has router weights (only methods without a router: pt, mpt, attempt, lora, prefix)"
        )
    keys = [k for k in varying_keys(groups) if k != "method"]
    files = []
    for method, rows in by_method.items():
        ncols = min(MAX_PANELS, max(len(row) for row in rows))
        per_page = max(1, MAX_PANELS // ncols)
        pages = [rows[i : i + per_page] for i in range(0, len(rows), per_page)]
        for number, page in enumerate(pages, 1):
            figure, axes = _new_figure(width=4.2, height=3.2, ncols=ncols, nrows=len(page), constrained=True)
            scale = shared_scale([p.matrix for row in page for p in row[:ncols]])
            image = None
            for r, row in enumerate(page):
                for c in range(ncols):
                    ax = axes[r, c]
                    if c >= len(row):
                        ax.set_visible(False)
                        continue
                    panel = row[c]
                    sources = [f"src{i}" for i in range(panel.matrix.shape[1])]
                    image = heatmap(ax, panel.matrix, panel.group.tasks, sources, fmt="{:.2f}", scale=scale)
                    label = series_label(panel.group.settings, keys) if keys else method
                    ax.set_title(f"{label}, seed {panel.seed}", fontsize=8)
            figure.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8)
            figure.suptitle(
                f"router weights: {method}, one panel per seed (src<i> of one seed is not that of another)"
            )
            name = f"router_{slug(method)}" + (f"_{number}" if number > 1 else "")
            files.append(_save(figure, out / f"{name}.png", tight=False))
    return files


def _mean_curve(group: Group, name: str) -> tuple[np.ndarray, np.ndarray]:
    by_step: dict[float, list[float]] = {}
    for run in group.runs:
        for step, y in (run.results.get("curves") or {}).get(name) or []:
            if y is not None:
                by_step.setdefault(float(step), []).append(float(y))
    steps = sorted(by_step)
    return np.array(steps), np.array([np.mean(by_step[s]) for s in steps])


def validates_on_test_set(group: Group) -> bool:
    """Whether the group's validation curve was measured on the test set: no development split carved from
    the training split (``data.validation_from_train=0``, the paper's setting)."""
    for run in group.runs:
        recorded = (run.results.get("validation") or {}).get("from_train")
        rows = recorded if recorded is not None else config_value(run.results, "data.validation_from_train")
        if rows:
            return False
    return True


def validation_curve_label(groups: Sequence[Group]) -> tuple[str, str]:
    """The y label and the title of the validation panel: which set the curve was measured on."""
    on_test = {validates_on_test_set(g) for g in groups}
    if on_test == {True}:
        return "test Avg.", "the test set (no development split: data.validation_from_train=0)"
    if on_test == {False}:
        return "validation Avg.", "a development split carved from the training split"
    return "validation Avg.", "[test]: no development split, the curve is the test set"


def plot_curves(groups: Sequence[Group], out: Path) -> list[Path]:
    """Training curves per method: train loss and validation Avg. against the step, mean over seeds. The
    validation panel says when it is the test set (:func:`validation_curve_label`)."""
    has_curve = [g for g in groups if _mean_curve(g, "train_loss")[0].size]
    if not has_curve:
        raise PlotSkipped("no run recorded a training curve")
    keys = [k for k in varying_keys(groups) if k != "method"]
    files = []
    for method in dict.fromkeys(g.settings.get("method", "-") for g in has_curve):
        figure, axes = _new_figure(ncols=2)
        members = [g for g in has_curve if g.settings.get("method", "-") == method]
        validation, measured_on = validation_curve_label(members)
        axes[0, 1].set_title(measured_on, fontsize=8)
        mixed = len({validates_on_test_set(g) for g in members}) > 1
        for index, g in enumerate(members):
            label = series_label(g.settings, keys) if keys else method
            label += " [test]" if mixed and validates_on_test_set(g) else ""
            for ax, name in zip(axes[0], ("train_loss", "val_avg")):
                x, y = _mean_curve(g, name)
                if x.size:  # same colour for a group on both panels
                    ax.plot(x, y, marker="." if x.size < 20 else None, label=label, color=f"C{index % 10}")
        for ax, name in zip(axes[0], ("train loss", validation)):
            ax.set_xlabel("step")
            ax.set_ylabel(name)
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
        figure.suptitle(f"training curves: {method} (mean over seeds)")
        files.append(_save(figure, out / f"curves_{slug(method)}.png"))
    return files


#: (name, title, function) of every plot kind, in report order
PLOTS: list[tuple[str, str, Callable[[Sequence[Group], Path], list[Path]]]] = [
    ("n_sources", "Avg. vs number of source prompts (Fig. 2)", plot_n_sources),
    ("router_learn", "Constant vs learned weights (Fig. 5)", plot_router_learn),
    ("masks", "Source masking, task × mask (Figs. 3/4/6)", plot_masks),
    ("router_weights", "Router weights per task", plot_router_weights),
    ("lr_private", "Avg. vs private learning rate (Fig. 7)", plot_lr_private),
    ("curves", "Training curves", plot_curves),
]


def make_plots(
    groups: Sequence[Group],
    out: Path,
    kinds: Sequence[tuple[str, str, Callable[[Sequence[Group], Path], list[Path]]]] = PLOTS,
) -> list[PlotResult]:
    """Every plot kind (of ``kinds``) the data supports, written under ``out``; the others with the reason
    they were skipped."""
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for name, title, function in kinds:
        try:
            results.append(PlotResult(name, title, function(groups, out)))
        except PlotSkipped as reason:
            results.append(PlotResult(name, title, [], str(reason)))
    return results


__all__ = ["PLOTS", "PlotResult", "PlotSkipped", "make_plots"]
