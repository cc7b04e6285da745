"""What one ``method`` means at run level: its recipe, registered under its name
(:mod:`~compt.recipes.registry`): one fit for every composition method (:mod:`~compt.recipes.plain`), SPoT's two
stages (:mod:`~compt.recipes.spot`), ``pt_single``'s per-task runs (:mod:`~compt.recipes.single_task`).

Importing the package imports every recipe module, so the table is full: ``recipe_for(cfg.method.name)``.
"""

from compt.recipes import plain, single_task, spot  # noqa: F401 (each module registers its methods)
from compt.recipes.registry import RECIPES, Recipe, recipe_for, register_recipe

__all__ = ["RECIPES", "Recipe", "recipe_for", "register_recipe"]
