"""The processes of one run: this process's rank as its launcher set it, the devices a trainer asks for, and the
ranks compt starts itself for ``trainer.strategy=ddp_spawn``."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from omegaconf import ListConfig

from compt.config.schema import TrainSchema
from compt.runtime.stopping import stop_request

#: what each spawned rank runs: the fit of one run in its process (:func:`compt.training.fit.fit_here`)
RankTarget = Callable[[TrainSchema, Path, list[str]], Any]


def launch_rank() -> int:
    """This process's rank as set by the launcher of a DDP run (Lightning, torchrun, SLURM); 0 otherwise."""
    for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def device_count(devices: Any, accelerator: Any = None) -> int:
    """How many devices (hence DDP ranks) ``trainer.devices`` asks for: an int, ``"2"``, a list or
    ``"0,1"``, or -1/``"auto"`` = every GPU there is (1 on CPU)."""
    if devices in (-1, "-1", "auto"):
        if str(accelerator) == "cpu":
            return 1
        import torch

        return max(torch.cuda.device_count(), 1)
    if isinstance(devices, list | tuple | ListConfig):
        return len(devices)
    if isinstance(devices, str):
        text = devices.strip()
        if "," in text:
            return len([part for part in text.split(",") if part.strip()])
        return device_count(int(text), accelerator) if text.lstrip("-").isdigit() else 1
    return int(devices)


def spawned_world_size(trainer: dict[str, Any]) -> int:
    """Processes compt starts itself for ``trainer.strategy=ddp_spawn`` (its devices), else 1."""
    if not str(trainer.get("strategy", "auto")).startswith("ddp_spawn"):
        return 1
    return device_count(trainer.get("devices", 1), trainer.get("accelerator"))


def spawn_ranks(
    target: RankTarget, world: int, cfg: TrainSchema, output_dir: Path, overrides: list[str]
) -> None:
    """``ddp_spawn``: start one process per rank (``torch.multiprocessing.spawn``) and run plain DDP in them:
    each runs ``target`` (the fit of one run in its process) exactly as under ``trainer=ddp`` (rank 0 writes
    the results).

    Lightning's own ``ddp_spawn`` cannot offer that: it trains in the children and hands only the weights back,
    losing the evaluation results, predictions and curves kept on the module and callbacks. Unlike ``ddp`` it
    does not re-run the script, so it works inside a ``-m`` sweep.
    """
    import torch

    port = _free_port()
    stop = stop_request()
    # a stop signal here ends the job at once; the ranks (in this process group) stop without a new checkpoint
    stop.outside = "while its ddp_spawn ranks trained; the relaunch resumes from their last checkpoint"
    try:
        torch.multiprocessing.spawn(
            _spawned_rank,
            args=(world, port, target, cfg, str(output_dir), overrides),
            nprocs=world,
            join=True,
        )
    finally:
        stop.outside = None


def _spawned_rank(
    rank: int,
    world: int,
    port: int,
    target: RankTarget,
    cfg: TrainSchema,
    output_dir: str,
    overrides: list[str],
) -> None:
    os.environ.update(
        {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "WORLD_SIZE": str(world),
            "NODE_RANK": "0",
            "LOCAL_RANK": str(rank),  # Lightning: the processes were created externally, run DDP in them
        }
    )
    target(replace(cfg, trainer={**cfg.trainer, "strategy": "ddp"}), Path(output_dir), overrides)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
