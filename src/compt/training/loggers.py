"""Experiment loggers from config: W&B (online, or offline when not logged in), CSV, or none."""

from __future__ import annotations

import logging
import netrc
import os
import warnings
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import CSVLogger, Logger, WandbLogger
from pytorch_lightning.utilities import rank_zero_info

from compt.errors import ConfigError

LOGGERS = ("wandb", "csv", "none")


class _DropAdverts(logging.Filter):
    """Drops Lightning's "💡 Tip: ... try installing litlogger" line, printed at every Trainer start."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


#: warnings that say nothing about the run (regular expressions matched at the start of the message)
KNOWN_NOISE = (
    # torchmetrics: evaluation sets are bounded (eval.max_samples), the buffer is small
    r"Metric `(Spearman|Pearson)Corrcoef` will save all targets and predictions",
    # torchmetrics: constant predictions; compt scores such a correlation as 0 (see README, metrics)
    r"The variance of predictions or target is close to zero",
    # Lightning 2.6 calling a torch.utils._pytree API that torch 2.13 deprecates
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
)


def quiet_known_noise() -> None:
    """Keep run logs to what the run did: drop Lightning's advert and :data:`KNOWN_NOISE` (idempotent)."""
    log = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if not any(isinstance(f, _DropAdverts) for f in log.filters):
        log.addFilter(_DropAdverts())
    for message in KNOWN_NOISE:
        warnings.filterwarnings("ignore", message=message)


def wandb_logged_in() -> bool:
    """Whether a W&B API key is available (environment or ~/.netrc)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def run_group(overrides: list[str]) -> str:
    """The W&B group of a run: its overrides minus the seed, so a dashboard averages over seeds."""
    kept = sorted(o for o in overrides if not o.lstrip("+~").startswith(("seed=", "hydra.", "force=")))
    return ",".join(kept) or "default"


def build_logger(
    kind: str, save_dir: Path, group: str, name: str, config: dict[str, Any], wandb_options: dict[str, Any]
) -> Logger | bool:
    """``wandb`` | ``csv`` | ``none``. W&B falls back to offline mode (one notice) when not logged in."""
    if kind == "none":
        return False
    if kind == "csv":
        return CSVLogger(save_dir=str(save_dir), name="csv", version="")
    if kind != "wandb":
        raise ConfigError(f"logger={kind!r}; choose one of {', '.join(LOGGERS)}")
    mode = os.environ.get("WANDB_MODE") or wandb_options.get("mode")
    if mode is None:
        mode = "online" if wandb_logged_in() else "offline"
        if mode == "offline":
            rank_zero_info("W&B: not logged in, logging offline (sync later with `wandb sync`).")
    return WandbLogger(
        project=wandb_options.get("project", "compt"),
        entity=wandb_options.get("entity"),
        group=group,
        name=name,
        save_dir=str(save_dir),
        mode=mode,
        config=config,
        tags=list(wandb_options.get("tags") or []),
        reinit="finish_previous",
    )


def finish_wandb() -> None:
    """Close any open W&B run, so the next job of a sweep never inherits it."""
    try:
        import wandb

        if wandb.run is not None:
            wandb.finish()
    except Exception:
        pass
