"""The LightningModule of a run, from its :class:`~compt.config.run_config.RunConfig`. Shared by the run driver
(:mod:`compt.training.fit`) and ``compt evaluate``."""

from __future__ import annotations

from compt.config.run_config import RunConfig
from compt.training.init_from import initialise_bank
from compt.training.module import ComptModule


def build_module(config: RunConfig, initialise: bool = True) -> ComptModule:
    """The run's LightningModule; ``initialise`` applies ``sources.init_from`` and ``prompt.private_init_from``
    (left out when trained weights are loaded next)."""
    run = config.run
    module = ComptModule(
        run.model_name,
        config.bank,
        config.tasks,
        config.optim,
        config.router,
        config.evaluation,
        run.backbone_dropout,
        run.seed,
        run.backbone_dtype,
        run.activation_checkpointing,
    )
    if initialise:
        initialise_bank(module.bank, run.sources_init_from, run.private_init_from)
    return module
