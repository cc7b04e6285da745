"""SPoT (Vu et al., 2022, "SPoT: Better Frozen Model Adaptation through Soft Prompt Transfer"), generic variant,
as two ordinary compt runs in one command.

Stage 1 tunes ONE shared prompt multi-task on the source tasks (method ``sources_only`` with one source and
constant weights); stage 2 starts every target task's prompt (and its encoder) from it and tunes them
(method ``pt``). Reproduced: that transfer, under compt's few-shot protocol. Not reproduced: SPoT's large
source-task mixture and its prompt-similarity task selection ("targeted" SPoT).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from compt.config.schema import TrainSchema
from compt.recipes.plain import fit_part, inherit_divergence
from compt.recipes.registry import register_recipe
from compt.runs import DIVERGED
from compt.training.fit import fit_run

SPOT_METHOD = "spot"
STAGE1_DIR = "stage1"


def train_spot(cfg: TrainSchema, output_dir: Path, overrides: list[str]) -> dict[str, Any]:
    """``method=spot``: stage 1 in ``<run>/stage1/`` (skipped when an earlier launch finished it), then stage 2 in
    the run's folder; a diverged stage 1 makes the run diverged (stage 2 would start from a diverged prompt)."""
    stage1, stage2 = spot_stages(cfg, output_dir)
    first = fit_part(stage1, Path(output_dir) / STAGE1_DIR, overrides)
    if first.get("status") == DIVERGED:
        return inherit_divergence(cfg, output_dir, overrides, first, STAGE1_DIR)
    return fit_run(stage2, output_dir, overrides)


def spot_stages(cfg: TrainSchema, output_dir: str | Path) -> tuple[TrainSchema, TrainSchema]:
    """The configs of stage 1 (shared prompt) and stage 2 (target prompts initialised from it)."""
    method = cfg.method
    stage1 = replace(
        cfg,
        method=replace(method, name="spot_stage1", bank_method="sources_only", n_sources=1),
        router=replace(cfg.router, learn=False),
        optim=replace(cfg.optim, epochs=method.stage1_epochs),
        eval=replace(cfg.eval, masks=["total"]),
        tasks={name: {} for name in method.source_tasks} if method.source_tasks else cfg.tasks,
    )
    stage2 = replace(
        cfg,
        method=replace(method, bank_method="pt"),
        prompt=replace(cfg.prompt, private_init_from=str(Path(output_dir) / STAGE1_DIR)),
    )
    return stage1, stage2


register_recipe(SPOT_METHOD, train_spot)
