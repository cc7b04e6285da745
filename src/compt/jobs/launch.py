"""How a job was launched, settled before any work starts: refusing launches that cannot work, the output folder
shared by the ranks of a DDP run, a GPU (or a share of one) per job under the joblib launcher, and what a
stopped job says about resuming it. (The schema and resolvers Hydra composes with: :mod:`compt.config.hydra`.)"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from compt.errors import ConfigError, LaunchError
from compt.training.spawn import device_count, launch_rank

RUN_DIR_ENV = "COMPT_RUN_DIR"
"""Set by rank 0 to its output folder; processes it starts (DDP ranks) write into the same folder."""

GPU_LOCK_DIR_ENV = "COMPT_GPU_LOCK_DIR"
"""Folder of the per-GPU lock files of joblib jobs (default: ``<tmp>/compt-gpu-locks-<uid>``)."""


def check_launch(cfg: DictConfig, hydra_cfg: Any) -> None:
    """Refuse a ``-m`` sweep whose trainer would start its DDP ranks by re-running this script: Lightning
    would relaunch the whole sweep once per rank.

    That is any trainer on several devices (``trainer.devices`` > 1, a list of several, or -1/``auto`` where
    several devices exist), whatever ``trainer.strategy`` says (``auto`` picks DDP there too), except
    ``ddp_spawn``, whose ranks compt starts itself, and ranks that SLURM started (``hydra/launcher=slurm``
    with ``tasks_per_node`` = devices): nothing is re-launched then.
    """
    if hydra_cfg.mode != RunMode.MULTIRUN or _slurm_started_ranks():
        return
    strategy = str(cfg.trainer.get("strategy", "auto"))
    devices = cfg.trainer.get("devices", 1)
    if strategy.startswith("ddp_spawn") or device_count(devices, cfg.trainer.get("accelerator")) <= 1:
        return
    raise LaunchError(
        f"trainer.devices={devices} with trainer.strategy={strategy} cannot run inside a -m sweep: Lightning "
        "re-launches this script once per rank, which would re-run the whole sweep on every rank. Use "
        "trainer.strategy=ddp_spawn (trainer=ddp_spawn), or one device per job (trainer.devices=1, with "
        "hydra/launcher=slurm or joblib to run jobs in parallel), or run the DDP job on its own without -m."
    )


def _slurm_started_ranks() -> bool:
    """Whether SLURM started this job's ranks (``tasks_per_node`` > 1): Lightning then re-launches nothing."""
    return os.environ.get("SLURM_NTASKS", "1").isdigit() and int(os.environ.get("SLURM_NTASKS", "1")) > 1


def shared_output_dir(hydra_output_dir: str) -> str:
    """The run folder of this process: rank 0's for every rank of a DDP run.

    Lightning re-launches ``train.py`` once per extra rank with ``hydra.run.dir`` set to rank 0's folder;
    this also covers launchers that do not (a timestamped ``hydra.run.dir`` resolves differently in each
    process): rank 0 exports its folder in ``COMPT_RUN_DIR`` before starting the other ranks, and a process
    with rank > 0 that finds it uses it.
    """
    inherited = os.environ.get(RUN_DIR_ENV)
    if launch_rank() > 0 and inherited:
        return inherited
    os.environ[RUN_DIR_ENV] = hydra_output_dir
    return hydra_output_dir


def _uses_joblib(hydra_cfg: Any) -> bool:
    return "joblib" in str(hydra_cfg.launcher.get("_target_", ""))


def jobs_per_gpu(cfg: DictConfig) -> int:
    """``jobs_per_gpu`` (default 1): how many joblib jobs may hold one GPU at once.

    Raises:
        ConfigError: not a positive integer.
    """
    value = cfg.get("jobs_per_gpu", 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"jobs_per_gpu must be a positive integer (jobs sharing one GPU), got {value!r}")
    return value


@contextmanager
def joblib_gpu(cfg: DictConfig, hydra_cfg: Any) -> Iterator[int | None]:
    """Under ``hydra/launcher=joblib`` on a machine with GPUs, hold a GPU (or a share of one) for the whole job.

    The job takes the first free slot, starting at GPU ``job number mod GPU count``, by locking
    ``<lock dir>/gpu<i>.lock`` (``fcntl.flock``; released when the job ends or its process dies), waits when
    all are taken, and sets ``trainer.devices=[i]``. ``jobs_per_gpu=N`` gives each GPU N slots (:func:`gpu_lease`),
    so up to N jobs share it. With ``hydra.launcher.n_jobs`` = GPUs × ``jobs_per_gpu``, no job waits.
    ``CUDA_VISIBLE_DEVICES`` is not used: joblib re-uses worker processes, and CUDA reads that variable once per
    process. Yields the GPU index, or None (CPU runs, other launchers, several devices per job) when nothing
    is pinned.
    """
    import torch

    count = torch.cuda.device_count()
    devices = cfg.trainer.get("devices", 1)
    shares = jobs_per_gpu(cfg)
    if (
        not _uses_joblib(hydra_cfg)
        or count == 0
        or str(cfg.trainer.get("accelerator", "auto")) == "cpu"
        or devices not in (1, "1")
    ):
        yield None
        return
    lock_dir = Path(
        os.environ.get(GPU_LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / f"compt-gpu-locks-{os.getuid()}"
    )
    preferred = int(hydra_cfg.job.num) % count
    with gpu_lease(lock_dir, count, preferred=preferred, jobs_per_gpu=shares) as index:
        with open_dict(cfg):
            cfg.trainer.devices = [index]
        shared = f" (shared by up to {shares} jobs)" if shares > 1 else ""
        print(f"[compt] joblib job {hydra_cfg.job.num}: GPU {index} of {count}{shared}")
        yield index


def lease_slots(count: int, preferred: int = 0, jobs_per_gpu: int = 1) -> list[tuple[int, int]]:
    """The (GPU, slot) pairs a job tries, in order: slot 0 of every GPU (from ``preferred`` on), then slot 1
    of every GPU, ... so jobs spread over the GPUs before any GPU takes a second one."""
    return [((preferred + i) % count, slot) for slot in range(jobs_per_gpu) for i in range(count)]


def slot_lock_name(index: int, slot: int) -> str:
    """``gpu<i>.lock`` for a GPU's first slot (an exclusive lease, as before ``jobs_per_gpu``), ``gpu<i>.<s>.lock``
    for the others."""
    return f"gpu{index}.lock" if slot == 0 else f"gpu{index}.{slot}.lock"


@contextmanager
def gpu_lease(
    lock_dir: Path, count: int, preferred: int = 0, poll_s: float = 5.0, jobs_per_gpu: int = 1
) -> Iterator[int]:
    """A lease on one of ``jobs_per_gpu`` slots of one of ``count`` GPUs (``flock`` on the slot's lock file
    in ``lock_dir``, :func:`slot_lock_name`), trying ``preferred`` first (:func:`lease_slots`); waits,
    polling every ``poll_s`` seconds, while all are held. Yields the GPU index.

    ``jobs_per_gpu=1`` is an exclusive lease. Jobs launched with different ``jobs_per_gpu`` share the first slot's
    lock only: a job with 1 never runs beside another holding slot 0, but may run beside jobs in slots 1.. of
    a sweep launched with more.
    """
    lock_dir.mkdir(parents=True, exist_ok=True)
    order = lease_slots(count, preferred, jobs_per_gpu)
    while True:
        for index, slot in order:
            handle = (lock_dir / slot_lock_name(index, slot)).open("w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            try:
                yield index
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
            return
        time.sleep(poll_s)


def how_to_resume(output_dir: str | Path, sweep: Any | None = None) -> str:
    """The end of a stopped job's line: how to resume it, and (a ``-m`` sweep of Hydra's basic sweeper) which
    of the sweep's jobs never started.

    Args:
        output_dir: the job's folder.
        sweep: for a job of a sweep, Hydra's config of the job (``HydraConfig.get()``), else None.
    """
    if sweep is None:
        return f"resume it with: python train.py resume={output_dir}"
    if "BasicSweeper" not in str(sweep.sweeper.get("_target_", "")):
        return "relaunch the same command to continue: finished trials are kept, this one resumes"
    text = "relaunch the same command to resume the sweep: finished jobs are skipped, this one resumes"
    if "BasicLauncher" not in str(sweep.launcher.get("_target_", "")):
        return text  # jobs run in parallel: which never started is not known here
    from compt.sweeps.records import never_started

    later = never_started(Path(sweep.sweep.dir), int(sweep.job.num))
    return text + (f"; never started: {later}" if later else "; it was the sweep's last job")
