"""One fit: the recipe of every composition method (pt, ssum, msum, mcat, sources_only, and the baselines mpt
and attempt), and the part of a run made of several (SPoT's stage 1, one of ``pt_single``'s tasks): a part that
is finished is skipped, and a part that diverged makes the whole run diverged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compt.config.schema import TrainSchema
from compt.prompts.methods import METHODS
from compt.recipes.registry import register_recipe
from compt.runs import RunDir, finished
from compt.training.divergence import inherited_divergence
from compt.training.fit import fit_run
from compt.training.loggers import run_group


def fit(cfg: TrainSchema, output_dir: Path, overrides: list[str]) -> dict[str, Any]:
    """The plain recipe: the run is one fit (:func:`compt.training.fit.fit_run`)."""
    return fit_run(cfg, output_dir, overrides)


for _method in METHODS:
    register_recipe(_method, fit)


def fit_part(cfg: TrainSchema, output_dir: Path, overrides: list[str]) -> dict[str, Any]:
    """A part of a run made of several, in its own folder: fitted, or skipped when finished (an earlier launch
    of the run trained it); its results.json either way."""
    part = RunDir(output_dir)
    results = None if finished(part) else fit_run(cfg, output_dir, overrides)
    return results or part.read_results()


def inherit_divergence(
    cfg: TrainSchema, output_dir: Path, overrides: list[str], part: dict[str, Any], where: str
) -> dict[str, Any]:
    """A part of the run (in ``<run>/<where>``) diverged: so did the run; record it in its results.json."""
    identity = {
        "method": cfg.method.name,
        "overrides": overrides,
        "group": run_group(overrides),
        "config": cfg.to_dict(),
    }
    results = inherited_divergence(part, identity, where)
    RunDir(output_dir).write_results(results)
    return results
