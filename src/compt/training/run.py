"""Train and test one ComPT run from a (Hydra) config; the body of ``python train.py``."""

from __future__ import annotations

import copy
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from pytorch_lightning.plugins.environments import SLURMEnvironment

from compt.data import ComptDataModule, DataConfig
from compt.prompts.bank import PromptBank
from compt.tasks import run_tasks
from compt.training.callbacks import CurveRecorder, LastCheckpoint, ResumeState
from compt.training.init_from import initialise_bank
from compt.training.loggers import build_logger, finish_wandb, quiet_known_noise, run_group
from compt.training.module import ComptModule
from compt.training.results import (
    BANK_DIR,
    FORMAT_VERSION,
    PREDICTIONS_FILE,
    RESULTS_FILE,
    is_complete,
    load_results,
    summary_table,
    write_json_atomic,
    write_predictions,
)
from compt.training.single_task import (
    SUBRUNS_DIR,
    combine_banks,
    combine_results,
    concatenate_lines,
    is_single_task_run,
    single_task_configs,
)
from compt.training.spot import STAGE1_DIR, spot_stages

CHECKPOINT_DIR = "checkpoints"
#: method-specific prompt bank options a method config may carry
METHOD_BANK_OPTIONS = ("mpt_rank", "attempt_hidden", "attempt_temperature")
LAST_CHECKPOINT = "last.ckpt"
#: the per-task and average figures results.json keeps for every mask: configured and paper reading
READINGS = ("primary", "avg", "primary_paper", "avg_paper")


def data_config(cfg: DictConfig) -> DataConfig:
    """The DataModule's settings from the run config."""
    d = cfg.data
    return DataConfig(
        source=d.source,
        dir=d.dir,
        k=cfg.k,
        kshot_balanced=cfg.kshot.balanced,
        kshot_allow_fewer=cfg.kshot.allow_fewer,
        seed=cfg.seed,
        eval_max_samples=cfg.eval.max_samples,
        eval_seed=cfg.eval.seed,
        validation_from_train=d.validation_from_train,
        temperature=d.temperature,
        batch_size=d.batch_size,
        eval_batch_size=cfg.eval.batch_size,
        max_source_length=d.max_source_length,
        max_target_length=d.max_target_length,
        num_workers=d.num_workers,
        group_by_length=d.group_by_length,
        epoch_size=d.epoch_size,
    )


def bank_settings(cfg: DictConfig) -> dict[str, Any]:
    """:class:`PromptBankConfig` fields from the run config (task names and d_model come from elsewhere).

    A method's config may set its own ``n_sources`` and ``encoder`` (mpt, attempt) and its own options
    (``mpt_rank``, ``attempt_*``); ``bank_method`` names the bank a multi-stage method trains (SPoT).
    """
    m, p = cfg.method, cfg.prompt
    settings = {
        "method": m.get("bank_method") or m.name,
        "n_sources": m.get("n_sources", cfg.n_sources),
        "source_length": m.source_length,
        "private_length": m.private_length,
        "encoder": m.get("encoder", p.encoder),
        "encoder_hidden": p.encoder_hidden,
        "encoder_residual": p.encoder_residual,
        "encoder_dropout": p.encoder_dropout,
        "source_init_range": p.source_init_range,
        "private_init": p.private_init,
        "router_learn": cfg.router.learn,
        "router_train_norm": cfg.router.train_norm,
        "router_sample": cfg.router.sample,
        "position": p.position,
        "freeze_sources": bool(OmegaConf.select(cfg, "sources.freeze", default=False)),
    }
    settings.update({key: m[key] for key in METHOD_BANK_OPTIONS if key in m})
    return settings


def epochs_for(cfg: DictConfig) -> int:
    """Training epochs: ``optim.epochs`` or the method's, doubled when k ≤ ``optim.double_epochs_max_k``."""
    epochs = cfg.optim.epochs if cfg.optim.epochs is not None else cfg.method.epochs
    if cfg.optim.double_epochs_max_k is not None and 0 < cfg.k <= cfg.optim.double_epochs_max_k:
        epochs *= 2
    return int(epochs)


def build_module(cfg: DictConfig, tasks: list, initialise: bool = True) -> ComptModule:
    """The LightningModule of a run config; ``initialise`` applies ``sources.init_from`` and
    ``prompt.private_init_from`` (left out when trained weights are loaded next)."""
    o, r = cfg.optim, cfg.router
    module = ComptModule(
        model_name=cfg.model.name,
        bank=bank_settings(cfg),
        tasks={t.name: {k: v for k, v in t.to_dict().items() if k != "name"} for t in tasks},
        optim={
            "lr_router": o.lr.router,
            "lr_sources": o.lr.sources,
            "lr_private": o.lr.private,
            "eps": o.eps,
            "weight_decay": o.weight_decay,
            "warmup_ratio": o.warmup_ratio,
            "schedule": o.schedule,
        },
        router={
            "anneal": r.anneal,
            "tau0": r.tau0,
            "tau_min": r.tau_min,
            "decrement": r.decrement,
            "k": cfg.k,
        },
        evaluation={
            "mode": cfg.eval.mode,
            "max_new_tokens": cfg.eval.max_new_tokens,
            "masks": list(cfg.eval.masks),
        },
        backbone_dropout=cfg.model.dropout,
        metrics_compat=cfg.metrics.compat,
        seed=cfg.seed,
    )
    if initialise:
        initialise_bank(
            module.bank,
            OmegaConf.select(cfg, "sources.init_from", default=None),
            OmegaConf.select(cfg, "prompt.private_init_from", default=None),
        )
    return module


def cluster_plugins() -> list[Any] | None:
    """Under SLURM: Lightning's SLURM environment with its own auto-requeue off.

    Re-queueing on a time limit or pre-emption is submitit's job (``hydra/launcher=slurm``: the requeued job
    re-runs in the same folder and resumes from ``checkpoints/last.ckpt``, see docs/scaling.md). Lightning's
    requeue would write a mid-epoch ``hpc_ckpt`` that this resume path does not read, and requeue twice.
    """
    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else None


def train(
    cfg: DictConfig, output_dir: str | Path, overrides: list[str] | None = None
) -> dict[str, Any] | None:
    """Train, test the last model, and write ``results.json``, ``predictions.jsonl`` and ``bank/``.

    A finished run (complete ``results.json``) is skipped unless ``force=true``; an interrupted one resumes
    from ``checkpoints/last.ckpt``. W&B is always finished, even when the run fails.
    """
    output_dir = Path(output_dir)
    overrides = list(overrides or [])
    if is_complete(output_dir):
        if not cfg.force:
            print(
                f"[compt] {output_dir} already has a complete {RESULTS_FILE}; skipping (force=true re-runs it)."
            )
            return None
        discard_finished_checkpoint(output_dir)
    if cfg.method.name == "spot" and not cfg.method.get("bank_method"):
        stage1, stage2 = spot_stages(cfg, output_dir)
        train(stage1, output_dir / STAGE1_DIR, overrides)
        return train(stage2, output_dir, overrides)
    if is_single_task_run(cfg):
        return _train_single_tasks(cfg, output_dir, overrides)
    try:
        world = spawned_world_size(cfg)
        if world > 1:
            return _spawn_ranks(cfg, output_dir, overrides, world)
        return _train(cfg, output_dir, overrides)
    finally:
        finish_wandb()


def _train_single_tasks(cfg: DictConfig, output_dir: Path, overrides: list[str]) -> dict[str, Any]:
    """``method=pt_single``: one ``pt`` run per task in ``<run>/tasks/<task>/``, then the run's own results,
    predictions and bank combined from theirs (:mod:`compt.training.single_task`)."""
    parts: dict[str, dict[str, Any]] = {}
    for task, single in single_task_configs(cfg).items():
        folder = output_dir / SUBRUNS_DIR / task
        parts[task] = train(single, folder, overrides) or load_results(folder)
    folders = [output_dir / SUBRUNS_DIR / task for task in parts]
    combine_banks([PromptBank.load(folder / BANK_DIR) for folder in folders]).save(output_dir / BANK_DIR)
    concatenate_lines([folder / PREDICTIONS_FILE for folder in folders], output_dir / PREDICTIONS_FILE)
    first = next(iter(parts.values()))
    shared = ("format_version", "status", "protocol", "k", "seed", "eval_mode", "n_sources")
    common = {key: first[key] for key in shared}
    combined = copy.deepcopy(cfg)
    with open_dict(combined):
        combined.method.bank_method = (
            "pt"  # the run folder's bank: every task's pt prompt (evaluate, predict)
        )
    common.update(
        method=cfg.method.name,
        metrics_compat=cfg.metrics.compat,
        overrides=overrides,
        group=run_group(overrides),
        config=OmegaConf.to_container(combined, resolve=True),
    )
    results = combine_results(parts, common)
    write_json_atomic(output_dir / RESULTS_FILE, results)
    print("\n" + summary_table(results) + f"\n\nwrote {output_dir / RESULTS_FILE}")
    return results


def discard_finished_checkpoint(output_dir: Path) -> None:
    """``force=true`` on a complete run: remove its final ``last.ckpt`` so that training starts from scratch.

    Without this the re-run would "resume" at the last step of the finished training and only re-test it.
    """
    last = output_dir / CHECKPOINT_DIR / LAST_CHECKPOINT
    if last.is_file():
        last.unlink()
        print(f"[compt] force=true: removed the finished run's {last}; training starts from scratch")


def spawned_world_size(cfg: DictConfig) -> int:
    """Processes compt starts itself for ``trainer.strategy=ddp_spawn`` (its devices), else 1."""
    if not str(cfg.trainer.get("strategy", "auto")).startswith("ddp_spawn"):
        return 1
    devices = cfg.trainer.get("devices", 1)
    if devices == -1 or devices == "auto":
        return max(torch.cuda.device_count(), 1) if cfg.trainer.get("accelerator") != "cpu" else 1
    return len(devices) if isinstance(devices, list | ListConfig) else int(devices)


def _spawn_ranks(cfg: DictConfig, output_dir: Path, overrides: list[str], world: int) -> dict[str, Any]:
    """``ddp_spawn``: start one process per rank (``torch.multiprocessing.spawn``) and run plain DDP in them.

    Each rank runs :func:`_train` exactly as under ``trainer=ddp`` (rank 0 writes the results), which
    Lightning's own ``ddp_spawn`` cannot offer: it trains in the children and hands only the weights back,
    losing the evaluation results, predictions and curves kept on the module and callbacks. Unlike ``ddp``
    it does not re-run the script, so it works inside a ``-m`` sweep. Returns rank 0's results.json.
    """
    port = _free_port()
    torch.multiprocessing.spawn(
        _spawned_rank, args=(world, port, cfg, str(output_dir), overrides), nprocs=world, join=True
    )
    return load_results(output_dir) if is_complete(output_dir) else {}


def _spawned_rank(
    rank: int, world: int, port: int, cfg: DictConfig, output_dir: str, overrides: list[str]
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
    with open_dict(cfg):
        cfg.trainer.strategy = "ddp"
    try:
        _train(cfg, Path(output_dir), overrides)
    finally:
        finish_wandb()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _train(cfg: DictConfig, output_dir: Path, overrides: list[str]) -> dict[str, Any]:
    started = time.perf_counter()
    quiet_known_noise()
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    tasks = run_tasks(OmegaConf.to_container(cfg, resolve=True))
    module = build_module(cfg, tasks)
    datamodule = ComptDataModule(tasks, module.tokenizer, data_config(cfg))

    group = run_group(overrides)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    logger = build_logger(
        cfg.logger.name,
        output_dir,
        group,
        f"{group},seed={cfg.seed}",
        resolved,
        dict(cfg.logger.get("wandb", {})),
    )
    last = output_dir / CHECKPOINT_DIR / LAST_CHECKPOINT
    checkpoint = LastCheckpoint(last, cfg.callbacks.checkpoint_every_n_epochs)
    curves = CurveRecorder()
    trainer_kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer = pl.Trainer(
        **trainer_kwargs,
        max_epochs=epochs_for(cfg),
        logger=logger,
        callbacks=[curves, ResumeState(), checkpoint],  # checkpoint last: it saves the others' epoch state
        enable_checkpointing=False,  # LastCheckpoint instead of Lightning's default ModelCheckpoint
        default_root_dir=str(output_dir),
        use_distributed_sampler=False,
        plugins=cluster_plugins(),
    )
    resume = str(last) if last.is_file() else None
    if resume:
        print(f"[compt] resuming from {last}")
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
    train_seconds = time.perf_counter() - started
    trainer.test(module, datamodule=datamodule, verbose=False)
    eval_seconds = time.perf_counter() - started - train_seconds
    if not trainer.is_global_zero:
        return {}
    results = collect_results(cfg, module, trainer, overrides, group, resolved, curves)
    results["timings"] = {
        "train_s": train_seconds,
        "eval_s": eval_seconds,
        "total_s": time.perf_counter() - started,
    }
    module.bank.save(output_dir / BANK_DIR)
    inputs = {task.name: datamodule.eval_rows(task.name) for task in tasks}
    write_predictions(output_dir / PREDICTIONS_FILE, module.predictions, inputs)
    write_json_atomic(output_dir / RESULTS_FILE, results)
    if not cfg.callbacks.get("keep_last_checkpoint", True):
        last.unlink(missing_ok=True)  # the run is complete: resuming is no longer needed
    print("\n" + summary_table(results) + f"\n\nwrote {output_dir / RESULTS_FILE}")
    return results


def collect_results(
    cfg: DictConfig,
    module: ComptModule,
    trainer: pl.Trainer,
    overrides: list[str],
    group: str,
    resolved: dict[str, Any],
    curves: CurveRecorder,
) -> dict[str, Any]:
    """Everything a report needs about one run (see README, "Outputs of a run")."""
    by_mask = module.last_eval["by_mask"]
    main = by_mask[module.eval_masks[0]]
    return {
        "format_version": FORMAT_VERSION,
        "status": "complete",
        "method": cfg.method.name,
        "protocol": cfg.get("protocol", "paper"),
        "k": cfg.k,
        "seed": cfg.seed,
        "n_sources": module.bank.config.n_sources,
        "tasks": [t.name for t in module.tasks],
        "eval_mode": cfg.eval.mode,
        "metrics_compat": cfg.metrics.compat,
        "overrides": overrides,
        "group": group,
        "metrics": main["tasks"],
        "primary": main["primary"],
        "avg": main["avg"],
        "primary_paper": main["primary_paper"],
        "avg_paper": main["avg_paper"],
        "counts": main["counts"],
        "invalid": main["invalid"],
        "masks": {mask: {key: r[key] for key in READINGS} for mask, r in by_mask.items()},
        "router_weights": module.router_weights(),
        "global_step": trainer.global_step,
        "epochs": trainer.current_epoch,
        "trainable_parameters": sum(p.numel() for p in module.bank.parameters()),
        "curves": {"train_loss": [list(p) for p in curves.train_loss], "val_avg": module.val_curve},
        "config": resolved,
    }


def load_bank_from_run(run_dir: str | Path) -> PromptBank:
    """The final prompt bank of a finished run."""
    return PromptBank.load(Path(run_dir) / BANK_DIR)
