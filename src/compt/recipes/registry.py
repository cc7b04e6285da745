"""The table of run-level methods: ``method=<name>`` -> the recipe that trains a job of it, as PEFT's
``register_peft_method`` registers its tuners.

A recipe trains one job's run in its folder and returns its results.json (``{}`` on a DDP rank other than 0):
``recipe(cfg, output_dir, overrides)``. The job (:func:`compt.jobs.job.run_job`) has claimed and repaired the
folder and applied ``force`` before; it calls the recipe its method names and nothing else. Every composition
method is one fit (:mod:`compt.recipes.plain`); SPoT (:mod:`compt.recipes.spot`) and ``pt_single``
(:mod:`compt.recipes.single_task`) register their own. A new run-level method is one module that calls
:func:`register_recipe` and is imported by :mod:`compt.recipes`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from compt.config.schema import TrainSchema
from compt.errors import ConfigError

#: ``recipe(cfg, output_dir, overrides) -> results.json``
Recipe = Callable[[TrainSchema, Path, list[str]], dict[str, Any]]

#: method name -> its recipe (filled by the modules of :mod:`compt.recipes` as they are imported)
RECIPES: dict[str, Recipe] = {}


def register_recipe(method: str, recipe: Recipe) -> Recipe:
    """Make ``recipe`` what ``method=<method>`` runs; returns it. A name registered with another recipe is a
    programming error (``ValueError``)."""
    known = RECIPES.get(method)
    if known is not None and known is not recipe:
        raise ValueError(f"method {method!r} already has a recipe: {known.__module__}.{known.__qualname__}")
    RECIPES[method] = recipe
    return recipe


def recipe_for(method: str) -> Recipe:
    """The recipe of ``method``.

    Raises:
        ConfigError: no recipe has that name (the message lists those there are).
    """
    try:
        return RECIPES[method]
    except KeyError:
        raise ConfigError(
            f"method={method} has no recipe (a run-level method registers one: compt.recipes); known: "
            f"{', '.join(RECIPES)}"
        ) from None
