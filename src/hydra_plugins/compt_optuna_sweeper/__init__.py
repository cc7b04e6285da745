"""compt's Optuna sweeper, registered with Hydra (its plugins live in the ``hydra_plugins`` namespace)."""
