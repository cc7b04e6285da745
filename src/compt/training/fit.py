"""The fit of one run: train, test the last model, and write the run's outputs (results.json, predictions,
bank), from its typed config; what every method's recipe runs (:mod:`compt.recipes`)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.environments import SLURMEnvironment

from compt.config.run_config import RunConfig
from compt.config.schema import TrainSchema
from compt.errors import RunDiverged
from compt.runs import COMPLETE, FORMAT_VERSION, READINGS, RunDir
from compt.runs.provenance import provenance
from compt.runtime.noise import quiet_known_noise
from compt.runtime.numerics import use_portable_cpu
from compt.runtime.runlog import report_summary
from compt.runtime.stopping import stop_request
from compt.training.build import build_module
from compt.training.callbacks import (
    BestBank,
    CurveRecorder,
    LastCheckpoint,
    ResumeState,
    ValidationRecord,
    extra_callbacks,
)
from compt.training.datamodule import ComptDataModule
from compt.training.divergence import DivergenceGuard, diverged_results
from compt.training.loggers import build_loggers, finish_wandb, run_group
from compt.training.module import ComptModule
from compt.training.results import summary_table
from compt.training.spawn import spawn_ranks, spawned_world_size
from compt.training.stop_boundary import StopAtStepBoundary

log = logging.getLogger(__name__)


def cluster_plugins() -> list[Any] | None:
    """Under SLURM: Lightning's SLURM environment with its own auto-requeue off.

    Re-queueing on a time limit or pre-emption is submitit's job (``hydra/launcher=slurm``: the requeued job
    re-runs in the same folder and resumes from ``checkpoints/last.ckpt``, see docs/scaling.md). Lightning's
    requeue would write a mid-epoch ``hpc_ckpt`` that this resume path does not read, and requeue twice.
    """
    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else None


def fit_run(cfg: TrainSchema, output_dir: str | Path, overrides: list[str]) -> dict[str, Any]:
    """Train the run in ``output_dir`` (resuming from ``checkpoints/last.ckpt`` when there is one), test the last
    model, and write ``results.json``, ``predictions.jsonl`` and ``bank/``; returns its results.json (``{}`` on
    a DDP rank other than 0). In this process, or in the ranks of ``trainer.strategy=ddp_spawn``
    (:func:`compt.training.spawn.spawn_ranks`). A run that diverges writes a ``diverged`` results.json and
    returns it.

    Whether the run trains at all (finished, claimed by another process, forced) is its job's to decide
    (:mod:`compt.jobs.job`); what a method's run is made of, its recipe's (:mod:`compt.recipes`).
    """
    output_dir = Path(output_dir)
    world = spawned_world_size(cfg.trainer)
    if world <= 1:
        return fit_here(cfg, output_dir, overrides)
    spawn_ranks(fit_here, world, cfg, output_dir, overrides)
    run = RunDir(output_dir)
    return run.read_results() if run.is_complete() or run.is_diverged() else {}


def fit_here(cfg: TrainSchema, output_dir: Path, overrides: list[str]) -> dict[str, Any]:
    """The fit of :func:`fit_run` in this process (or one rank of a DDP run). W&B is always finished, even when
    the run fails."""
    try:
        return _fit(cfg, output_dir, overrides)
    finally:
        finish_wandb()


def _fit(cfg: TrainSchema, output_dir: Path, overrides: list[str]) -> dict[str, Any]:
    started = time.perf_counter()
    quiet_known_noise()
    if cfg.portable_cpu:
        use_portable_cpu()
    config = RunConfig.from_schema(cfg)
    pl.seed_everything(config.run.seed, workers=True, verbose=False)
    if config.run.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    module = build_module(config)
    datamodule = ComptDataModule(config.tasks, module.tokenizer, config.data)

    group = run_group(overrides)
    run = RunDir(output_dir)
    last = run.last_checkpoint
    extras = extra_callbacks(cfg.callbacks)
    loggers = build_loggers(
        cfg.logger,
        output_dir,
        group,
        f"{group},seed={config.run.seed}",
        cfg.to_dict(),
        resuming=last.is_file(),
    )
    stop = stop_request()
    checkpoint = LastCheckpoint(last, cfg.callbacks["checkpoint_every_n_epochs"], stop)
    curves = CurveRecorder()
    validation = ValidationRecord()
    best = BestBank() if cfg.callbacks.get("restore_best") else None
    trainer = pl.Trainer(
        **cfg.trainer,
        max_epochs=config.epochs,
        logger=loggers or False,
        # the user's callbacks first; the divergence guard before the checkpoint (a diverged state is never
        # saved); the checkpoint after them: it saves the others' epoch state; a stop signal is acted on last
        callbacks=[
            *extras,
            curves,
            validation,
            *([best] if best is not None else []),
            ResumeState(),
            DivergenceGuard(),
            checkpoint,
            StopAtStepBoundary(stop, checkpoint),
        ],
        enable_checkpointing=False,  # LastCheckpoint instead of Lightning's default ModelCheckpoint
        default_root_dir=str(output_dir),
        use_distributed_sampler=False,
        plugins=cluster_plugins(),
    )
    if last.is_file():
        log.info("[compt] resuming from %s", last)
    with stop.deferred():  # a stop signal is acted on at the next step boundary (StopAtStepBoundary)
        return _fit_and_test(
            cfg, config, run, module, datamodule, trainer, overrides, started, curves, validation, best
        )


def _fit_and_test(
    cfg: TrainSchema,
    config: RunConfig,
    run: RunDir,
    module: ComptModule,
    datamodule: ComptDataModule,
    trainer: pl.Trainer,
    overrides: list[str],
    started: float,
    curves: CurveRecorder,
    validation: ValidationRecord,
    best: BestBank | None = None,
) -> dict[str, Any]:
    """Train (resuming from ``last.ckpt`` when there is one), test (the best validation's bank with
    ``callbacks.restore_best``: ``best``), and write the run's outputs (unless the job's claim was taken over
    meanwhile)."""
    group, resolved, last = run_group(overrides), cfg.to_dict(), run.last_checkpoint
    stop = stop_request()
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(last) if last.is_file() else None)
    except RunDiverged as diverged:  # every rank stops at the same check
        if not trainer.is_global_zero:
            return {}
        stop.check_claim()
        identity = run_identity(config, module, overrides, group, resolved) | {"global_step": diverged.step}
        results = diverged_results(diverged, identity, recorded_curves(module, curves))
        run.write_results(results)
        return results
    train_seconds = time.perf_counter() - started
    if config.data.validation_from_train and not validation.is_current(trainer):
        # a development split: its metrics (a search's objective) must describe the final model
        trainer.validate(module, datamodule=datamodule, verbose=False)
    restored = best.restore(module) if best is not None else None
    if restored:
        log.info(
            "[compt] callbacks.restore_best: testing the model of step %s (val/avg %.2f)", *restored.values()
        )
    trainer.test(module, datamodule=datamodule, verbose=False)
    eval_seconds = time.perf_counter() - started - train_seconds
    if not trainer.is_global_zero:
        return {}
    results = collect_results(config, module, trainer, overrides, group, resolved, curves)
    results["validation"] = {
        "from_train": config.data.validation_from_train,  # rows per task; 0: the validation set is the test set
        "global_step": validation.global_step,
        "metrics": validation.metrics,
    }
    if best is not None:
        results["validation"]["restored_best"] = restored  # the tested model: step and val/avg (None: last)
    results["provenance"] = provenance(
        trainer.strategy.root_device, trainer.num_devices * trainer.num_nodes, trainer.precision
    )
    results["timings"] = {
        "train_s": train_seconds,
        "eval_s": eval_seconds,
        "total_s": time.perf_counter() - started,
    }
    stop.check_claim()
    module.bank.save(run.bank_dir)
    inputs = {task.name: datamodule.eval_rows(task.name) for task in config.tasks}
    run.write_predictions(module.predictions, inputs, main_mask=module.eval_masks[0])
    run.write_results(results)
    if not cfg.callbacks["keep_last_checkpoint"]:
        last.unlink(missing_ok=True)  # the run is complete: resuming is no longer needed
    report_summary(summary_table(results) + f"\n\nwrote {run.results_file}")
    return results


def collect_results(
    config: RunConfig,
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
        "status": COMPLETE,
        **run_identity(config, module, overrides, group, resolved),
        "metrics": main["tasks"],
        "primary": main["primary"],
        "avg": main["avg"],
        "primary_paper": main["primary_paper"],
        "avg_paper": main["avg_paper"],
        "counts": main["counts"],
        "invalid": main["invalid"],
        "masks": {mask: {key: r[key] for key in READINGS} for mask, r in by_mask.items()},
        "router_weights": module.router_weights(),
        "router_logits": module.router_logits(),
        "cross_prompts": cross_prompt_results(module),
        "global_step": trainer.global_step,
        "epochs": trainer.current_epoch,
        "trainable_parameters": sum(p.numel() for p in module.bank.parameters()),
        "curves": recorded_curves(module, curves),
    }


def cross_prompt_results(module: ComptModule) -> dict[str, Any] | None:
    """``{prompt task: {primary, avg, primary_paper, avg_paper}}`` of every task answered under that task's
    prompt (``eval.cross_prompts``; None when off)."""
    cross = module.last_eval.get("cross_prompts")
    if cross is None:
        return None
    return {prompt: {key: r[key] for key in READINGS} for prompt, r in cross.items()}


def run_identity(
    config: RunConfig, module: ComptModule, overrides: list[str], group: str, resolved: dict[str, Any]
) -> dict[str, Any]:
    """What a run is (method, protocol, k, seed, tasks, overrides, config, ...), in every results.json it
    writes: a complete one or a diverged one."""
    return {
        "method": config.run.method,
        "protocol": config.run.protocol,
        "k": config.run.k,
        "seed": config.run.seed,
        "n_sources": module.bank.config.n_sources,
        "tasks": [t.name for t in module.tasks],
        "eval_mode": config.evaluation.mode,
        "metrics_compat": config.evaluation.metrics_compat,
        "overrides": overrides,
        "group": group,
        "config": resolved,
    }


def recorded_curves(module: ComptModule, curves: CurveRecorder) -> dict[str, Any]:
    """The training-loss (per epoch) and validation curves recorded so far."""
    return {"train_loss": [list(p) for p in curves.train_loss], "val_avg": module.val_curve}
