"""Train and test one ComPT run from a (Hydra) config; the body of ``python train.py``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint

from compt.data import ComptDataModule, DataConfig
from compt.prompts.bank import PromptBank
from compt.tasks import resolve_tasks
from compt.training.callbacks import CurveRecorder
from compt.training.loggers import build_logger, finish_wandb, run_group
from compt.training.module import ComptModule
from compt.training.results import (
    BANK_DIR,
    FORMAT_VERSION,
    PREDICTIONS_FILE,
    RESULTS_FILE,
    is_complete,
    summary_table,
    write_json_atomic,
    write_predictions,
)

CHECKPOINT_DIR = "checkpoints"


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
    """:class:`PromptBankConfig` fields from the run config (task names and d_model come from elsewhere)."""
    p = cfg.prompt
    return {
        "method": cfg.method.name,
        "n_sources": cfg.n_sources,
        "source_length": cfg.method.source_length,
        "private_length": cfg.method.private_length,
        "encoder": p.encoder,
        "encoder_hidden": p.encoder_hidden,
        "encoder_residual": p.encoder_residual,
        "encoder_dropout": p.encoder_dropout,
        "source_init_range": p.source_init_range,
        "private_init": p.private_init,
        "router_learn": cfg.router.learn,
        "router_train_norm": cfg.router.train_norm,
        "position": p.position,
    }


def epochs_for(cfg: DictConfig) -> int:
    """Training epochs: ``optim.epochs`` or the method's, doubled when k ≤ ``optim.double_epochs_max_k``."""
    epochs = cfg.optim.epochs if cfg.optim.epochs is not None else cfg.method.epochs
    if cfg.optim.double_epochs_max_k is not None and 0 < cfg.k <= cfg.optim.double_epochs_max_k:
        epochs *= 2
    return int(epochs)


def build_module(cfg: DictConfig, tasks: list) -> ComptModule:
    o, r = cfg.optim, cfg.router
    return ComptModule(
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


def train(
    cfg: DictConfig, output_dir: str | Path, overrides: list[str] | None = None
) -> dict[str, Any] | None:
    """Train, test the last model, and write ``results.json``, ``predictions.jsonl`` and ``bank/``.

    A finished run (complete ``results.json``) is skipped unless ``force=true``; an interrupted one resumes
    from ``checkpoints/last.ckpt``. W&B is always finished, even when the run fails.
    """
    output_dir = Path(output_dir)
    overrides = list(overrides or [])
    if is_complete(output_dir) and not cfg.force:
        print(
            f"[compt] {output_dir} already has a complete {RESULTS_FILE}; skipping (force=true re-runs it)."
        )
        return None
    try:
        return _train(cfg, output_dir, overrides)
    finally:
        finish_wandb()


def _train(cfg: DictConfig, output_dir: Path, overrides: list[str]) -> dict[str, Any]:
    started = time.perf_counter()
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    tasks = resolve_tasks(OmegaConf.to_container(cfg.tasks, resolve=True))
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
    checkpoint = ModelCheckpoint(
        dirpath=output_dir / CHECKPOINT_DIR,
        save_last=True,
        save_top_k=0,
        every_n_epochs=cfg.callbacks.checkpoint_every_n_epochs,
        save_on_train_epoch_end=True,
    )
    curves = CurveRecorder()
    trainer_kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer = pl.Trainer(
        **trainer_kwargs,
        max_epochs=epochs_for(cfg),
        logger=logger,
        callbacks=[checkpoint, curves],
        default_root_dir=str(output_dir),
        use_distributed_sampler=False,
    )
    last = output_dir / CHECKPOINT_DIR / "last.ckpt"
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
        "k": cfg.k,
        "seed": cfg.seed,
        "n_sources": cfg.n_sources,
        "tasks": [t.name for t in module.tasks],
        "eval_mode": cfg.eval.mode,
        "metrics_compat": cfg.metrics.compat,
        "overrides": overrides,
        "group": group,
        "metrics": main["tasks"],
        "primary": main["primary"],
        "avg": main["avg"],
        "counts": main["counts"],
        "invalid": main["invalid"],
        "masks": {mask: {"primary": r["primary"], "avg": r["avg"]} for mask, r in by_mask.items()},
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
