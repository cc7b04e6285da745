"""Train and test one ComPT run from a (Hydra) config; the body of ``python train.py``."""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.environments import SLURMEnvironment

from compt.errors import RunDiverged
from compt.prompts.bank import PromptBank
from compt.provenance import provenance
from compt.runs import COMPLETE, DIVERGED, FORMAT_VERSION, RESULTS_FILE, RunDir
from compt.training.build import build_module
from compt.training.callbacks import (
    BestBank,
    CurveRecorder,
    LastCheckpoint,
    ResumeState,
    ValidationRecord,
    extra_callbacks,
)
from compt.training.config import RunConfig
from compt.training.datamodule import ComptDataModule
from compt.training.divergence import DivergenceGuard, diverged_results, inherited_divergence
from compt.training.launch import device_count
from compt.training.loggers import build_loggers, finish_wandb, run_group
from compt.training.module import ComptModule
from compt.training.noise import quiet_known_noise
from compt.training.numerics import use_portable_cpu
from compt.training.results import summary_table
from compt.training.runlog import report_summary
from compt.training.schema import TrainSchema
from compt.training.single_task import (
    SUBRUNS_DIR,
    combine_banks,
    combine_results,
    combined_config,
    concatenate_lines,
    is_single_task_run,
    single_task_configs,
)
from compt.training.spot import STAGE1_DIR, is_spot_run, spot_stages
from compt.training.stop_boundary import StopAtStepBoundary
from compt.training.stopping import stop_request

#: the per-task and average figures results.json keeps for every mask: configured and paper reading
READINGS = ("primary", "avg", "primary_paper", "avg_paper")
#: what a relaunch finds finished: skipped unless force=true
FINISHED = ("done", DIVERGED)

log = logging.getLogger(__name__)


def cluster_plugins() -> list[Any] | None:
    """Under SLURM: Lightning's SLURM environment with its own auto-requeue off.

    Re-queueing on a time limit or pre-emption is submitit's job (``hydra/launcher=slurm``: the requeued job
    re-runs in the same folder and resumes from ``checkpoints/last.ckpt``, see docs/scaling.md). Lightning's
    requeue would write a mid-epoch ``hpc_ckpt`` that this resume path does not read, and requeue twice.
    """
    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else None


def train(
    cfg: TrainSchema, output_dir: str | Path, overrides: list[str] | None = None
) -> dict[str, Any] | None:
    """Train, test the last model, and write ``results.json``, ``predictions.jsonl`` and ``bank/``.

    A finished run (:meth:`RunDir.check`: done, or diverged) is skipped unless ``force=true``; an interrupted
    one resumes from ``checkpoints/last.ckpt``. A run that diverges writes a ``diverged`` results.json and
    returns it. W&B is always finished, even when the run fails. (``train.py`` calls this through
    :func:`compt.training.job.run_job`, which claims and repairs the folder and applies ``force`` first.)
    """
    output_dir = Path(output_dir)
    overrides = list(overrides or [])
    check = RunDir(output_dir).check()
    if check.status in FINISHED:
        if not cfg.force:
            log.info(
                "[compt] %s; skipping (force=true re-runs it).", finished_notice(output_dir, check.status)
            )
            return None
        discard_finished_checkpoint(output_dir)
    if is_spot_run(cfg):
        stage1, stage2 = spot_stages(cfg, output_dir)
        train(stage1, output_dir / STAGE1_DIR, overrides)
        first = RunDir(output_dir / STAGE1_DIR)
        if first.is_diverged():  # stage 2 would start from a diverged prompt
            return _inherit_divergence(cfg, output_dir, overrides, first.read_results(), STAGE1_DIR)
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


def _train_single_tasks(cfg: TrainSchema, output_dir: Path, overrides: list[str]) -> dict[str, Any]:
    """``method=pt_single``: one ``pt`` run per task in ``<run>/tasks/<task>/``, then the run's own results,
    predictions and bank combined from theirs (:mod:`compt.training.single_task`)."""
    singles: dict[str, RunDir] = {}
    parts: dict[str, dict[str, Any]] = {}
    for task, single in single_task_configs(cfg).items():
        singles[task] = RunDir(output_dir / SUBRUNS_DIR / task)
        parts[task] = train(single, singles[task].path, overrides) or singles[task].read_results()
        if parts[task].get("status") == DIVERGED:
            return _inherit_divergence(cfg, output_dir, overrides, parts[task], f"{SUBRUNS_DIR}/{task}")
    run = RunDir(output_dir)
    combine_banks([PromptBank.load(single.bank_dir) for single in singles.values()]).save(run.bank_dir)
    concatenate_lines([single.predictions_file for single in singles.values()], run.predictions_file)
    first = next(iter(parts.values()))
    shared = ("format_version", "status", "protocol", "k", "seed", "eval_mode", "n_sources")
    common = {key: first[key] for key in shared}
    common.update(
        provenance=first.get("provenance"),
        method=cfg.method.name,
        metrics_compat=cfg.metrics.compat,
        overrides=overrides,
        group=run_group(overrides),
        config=combined_config(cfg).to_dict(),
    )
    results = combine_results(parts, common)
    run.write_results(results)
    report_summary(summary_table(results) + f"\n\nwrote {run.results_file}")
    return results


def _inherit_divergence(
    cfg: TrainSchema, output_dir: Path, overrides: list[str], part: dict[str, Any], where: str
) -> dict[str, Any]:
    """A sub-run (SPoT's stage 1, a single-task run) diverged: so did this run; record it."""
    identity = {
        "method": cfg.method.name,
        "overrides": overrides,
        "group": run_group(overrides),
        "config": cfg.to_dict(),
    }
    results = inherited_divergence(part, identity, where)
    RunDir(output_dir).write_results(results)
    return results


def finished_notice(output_dir: Path, status: str) -> str:
    """What a relaunch says about a finished job it skips."""
    if status == DIVERGED:
        step = (RunDir(output_dir).read_results().get("diverged") or {}).get("step")
        return f"{output_dir} diverged (at step {step}, see its {RESULTS_FILE})"
    return f"{output_dir} already has a complete {RESULTS_FILE}"


def discard_finished_checkpoint(output_dir: Path) -> None:
    """``force=true`` on a complete run: remove its final ``last.ckpt`` so that training starts from scratch.

    Without this the re-run would "resume" at the last step of the finished training and only re-test it.
    """
    last = RunDir(output_dir).last_checkpoint
    if last.is_file():
        last.unlink()
        log.info("[compt] force=true: removed the finished run's %s; training starts from scratch", last)


def spawned_world_size(cfg: TrainSchema) -> int:
    """Processes compt starts itself for ``trainer.strategy=ddp_spawn`` (its devices), else 1."""
    if not str(cfg.trainer.get("strategy", "auto")).startswith("ddp_spawn"):
        return 1
    return device_count(cfg.trainer.get("devices", 1), cfg.trainer.get("accelerator"))


def _spawn_ranks(cfg: TrainSchema, output_dir: Path, overrides: list[str], world: int) -> dict[str, Any]:
    """``ddp_spawn``: start one process per rank (``torch.multiprocessing.spawn``) and run plain DDP in them.

    Each rank runs :func:`_train` exactly as under ``trainer=ddp`` (rank 0 writes the results), which
    Lightning's own ``ddp_spawn`` cannot offer: it trains in the children and hands only the weights back,
    losing the evaluation results, predictions and curves kept on the module and callbacks. Unlike ``ddp``
    it does not re-run the script, so it works inside a ``-m`` sweep. Returns rank 0's results.json.
    """
    port = _free_port()
    stop = stop_request()
    # a stop signal here ends the job at once; the ranks (in this process group) stop without a new checkpoint
    stop.outside = "while its ddp_spawn ranks trained; the relaunch resumes from their last checkpoint"
    try:
        torch.multiprocessing.spawn(
            _spawned_rank, args=(world, port, cfg, str(output_dir), overrides), nprocs=world, join=True
        )
    finally:
        stop.outside = None
    run = RunDir(output_dir)
    return run.read_results() if run.is_complete() or run.is_diverged() else {}


def _spawned_rank(
    rank: int, world: int, port: int, cfg: TrainSchema, output_dir: str, overrides: list[str]
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
    try:
        _train(replace(cfg, trainer={**cfg.trainer, "strategy": "ddp"}), Path(output_dir), overrides)
    finally:
        finish_wandb()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _train(cfg: TrainSchema, output_dir: Path, overrides: list[str]) -> dict[str, Any]:
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
