"""The authors' PT baseline (``method=pt_single``): vanilla prompt tuning, one task per run.

The authors' code trained its PT baseline on one task at a time (``attempt/configs/crosspt/PT.json``: L = 50,
prompt before the input, learning rate 0.05, batch 12, 20 epochs doubled when k ≤ 10; docs/method.md §8). ``method=pt_single`` runs that
as one command: an ordinary ``pt`` run per task in ``<run>/tasks/<task>/`` (each skipped when complete and
resumed when interrupted, like any run), then the run folder itself gets what every run has — one
``results.json`` over all the tasks, ``predictions.jsonl`` and a ``bank/`` (the single-task prompts stacked into
one ``pt`` bank, so ``compt predict``, ``export`` and ``evaluate`` work on it) — and reads in ``compt report``
like any other method on the same task set.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from compt.atomic import atomic_file
from compt.config.schema import TrainSchema
from compt.prompts import PromptBank, PromptBankConfig
from compt.recipes.plain import fit_part, inherit_divergence
from compt.recipes.registry import register_recipe
from compt.runs import DIVERGED, RunDir
from compt.runtime.runlog import report_summary
from compt.training.loggers import run_group
from compt.training.results import summary_table

SINGLE_TASK_METHOD = "pt_single"
SUBRUNS_DIR = "tasks"
#: figures of results.json that are one entry per task
PER_TASK_KEYS = ("metrics", "primary", "primary_paper", "counts", "invalid")


def train_single_tasks(cfg: TrainSchema, output_dir: Path, overrides: list[str]) -> dict[str, Any]:
    """``method=pt_single``: one ``pt`` run per task in ``<run>/tasks/<task>/`` (each skipped when an earlier
    launch finished it), then the run's own results, predictions and bank combined from theirs; a task's run
    that diverged makes the run diverged."""
    singles: dict[str, RunDir] = {}
    parts: dict[str, dict[str, Any]] = {}
    for task, single in single_task_configs(cfg).items():
        singles[task] = RunDir(Path(output_dir) / SUBRUNS_DIR / task)
        parts[task] = fit_part(single, singles[task].path, overrides)
        if parts[task].get("status") == DIVERGED:
            return inherit_divergence(cfg, output_dir, overrides, parts[task], f"{SUBRUNS_DIR}/{task}")
    run = RunDir(output_dir)
    combine_banks([PromptBank.load(single.bank_dir) for single in singles.values()]).save(run.bank_dir)
    concatenate_lines([single.predictions_file for single in singles.values()], run.predictions_file)
    results = combine_results(parts, combined_fields(cfg, next(iter(parts.values())), overrides))
    run.write_results(results)
    report_summary(summary_table(results) + f"\n\nwrote {run.results_file}")
    return results


def combined_fields(cfg: TrainSchema, first: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """The run-level fields of the combined results.json: the first task run's shared ones, the run's own."""
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
    return common


def single_task_configs(cfg: TrainSchema) -> dict[str, TrainSchema]:
    """One config per task of ``cfg``: the same settings with only that task, training a ``pt`` bank."""
    single = combined_config(cfg)
    return {str(name): replace(single, tasks={str(name): overrides}) for name, overrides in cfg.tasks.items()}


def combined_config(cfg: TrainSchema) -> TrainSchema:
    """The config recorded for the run folder itself: its bank holds every task's ``pt`` prompt."""
    return replace(cfg, method=replace(cfg.method, bank_method="pt"))


def combine_banks(banks: list[PromptBank]) -> PromptBank:
    """One ``pt`` bank over the tasks of single-task ``pt`` banks (in order): every per-task tensor (prompt,
    encoder weights) is stacked along the task axis, so each task's target prompt is exactly its own run's."""
    values = banks[0].config.to_dict()
    values["task_names"] = [name for bank in banks for name in bank.task_names]
    combined = PromptBank(PromptBankConfig.from_dict(values))
    states = [bank.state_dict() for bank in banks]
    combined.load_state_dict({key: torch.cat([state[key] for state in states]) for key in states[0]})
    return combined


def combine_results(parts: Mapping[str, dict[str, Any]], common: dict[str, Any]) -> dict[str, Any]:
    """One run's ``results.json`` from the single-task runs' (``parts``: task -> results): per-task figures
    side by side, averages over the tasks, steps, parameters and timings summed; ``common`` holds the
    run-level fields (method, k, seed, config, ...)."""
    combined: dict[str, Any] = {key: {} for key in PER_TASK_KEYS}
    for results in parts.values():
        for key in PER_TASK_KEYS:
            combined[key].update(results[key])
    combined["avg"] = statistics.fmean(combined["primary"].values())
    combined["avg_paper"] = statistics.fmean(combined["primary_paper"].values())
    reading = {key: combined[key] for key in ("primary", "avg", "primary_paper", "avg_paper")}
    timings = [results.get("timings", {}) for results in parts.values()]
    return {
        **common,
        **combined,
        "tasks": list(parts),
        "masks": {"total": reading},
        "router_weights": None,
        "global_step": sum(results["global_step"] for results in parts.values()),
        "epochs": max(results["epochs"] for results in parts.values()),
        "trainable_parameters": sum(results["trainable_parameters"] for results in parts.values()),
        "curves": {"train_loss": [], "val_avg": []},  # each task's curves: in its own run folder
        "timings": {key: sum(t.get(key, 0.0) for t in timings) for key in ("train_s", "eval_s", "total_s")},
        "single_task_runs": {task: f"{SUBRUNS_DIR}/{task}" for task in parts},
    }


def concatenate_lines(sources: list[Path], target: Path) -> Path:
    """Write the lines of every file in ``sources`` (in order) to ``target``."""
    with atomic_file(target) as handle:  # whole or not at all
        for path in sources:
            handle.write(path.read_text())
    return target


register_recipe(SINGLE_TASK_METHOD, train_single_tasks)
