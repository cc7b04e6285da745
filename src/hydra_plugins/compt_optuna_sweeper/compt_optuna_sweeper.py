"""The Hydra plugin behind ``hparams_search=optuna``: Hydra's Optuna sweeper with compt's trial bookkeeping
(:mod:`compt.jobs.search_sweeper`). Hydra imports every plugin module at start-up: this one stays light and
loads the implementation when a search starts; without ``pip install -e ".[hpo]"`` it defines nothing."""

from __future__ import annotations

from typing import Any

try:
    from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
except ImportError:  # the hpo extra is not installed: hparams_search=optuna says so when asked for
    OptunaSweeper = None

if OptunaSweeper is not None:

    class ComptOptunaSweeper(OptunaSweeper):
        """Takes the Optuna sweeper's settings (``hydra.sweeper.*``); see :mod:`compt.jobs.search_sweeper`."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            from compt.jobs.search_sweeper import ComptOptunaSweeperImpl

            self.sweeper = ComptOptunaSweeperImpl(*args, **kwargs)
