"""Checks on how a run was launched, before any work starts."""

from __future__ import annotations

from typing import Any

from hydra.types import RunMode
from omegaconf import DictConfig


class LaunchError(RuntimeError):
    """A launch setting that cannot work."""


def check_launch(cfg: DictConfig, hydra_cfg: Any) -> None:
    """Refuse in-process ``strategy=ddp`` under ``-m``: Lightning would relaunch the whole sweep once per rank.

    Use ``trainer.strategy=ddp_spawn`` in a sweep, one GPU per job (``hydra/launcher=slurm`` or ``joblib``),
    or plain ``ddp`` for a single run.
    """
    strategy = str(cfg.trainer.get("strategy", "auto"))
    devices = cfg.trainer.get("devices", 1)
    several = devices == -1 or (isinstance(devices, int) and devices > 1) or isinstance(devices, list | str)
    if (
        hydra_cfg.mode == RunMode.MULTIRUN
        and strategy.startswith("ddp")
        and "spawn" not in strategy
        and several
    ):
        raise LaunchError(
            f"trainer.strategy={strategy} cannot run inside a -m sweep: Lightning re-launches this script once "
            "per rank, which would re-run the whole sweep on every rank. Use trainer.strategy=ddp_spawn, "
            "or one GPU per job (hydra/launcher=slurm or joblib), or run the DDP job on its own without -m."
        )
