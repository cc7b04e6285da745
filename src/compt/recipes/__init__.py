"""What one ``method`` means at run level: one fit (every composition method), SPoT's two stages
(:mod:`~compt.recipes.spot`) or ``pt_single``'s per-task runs (:mod:`~compt.recipes.single_task`)."""
