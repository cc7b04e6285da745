"""SPoT (Vu et al., 2022, "SPoT: Better Frozen Model Adaptation through Soft Prompt Transfer"), generic variant,
as two ordinary compt runs in one command.

Stage 1 tunes ONE shared prompt multi-task on the source tasks (method ``sources_only`` with one source and
constant weights); stage 2 starts every target task's prompt (and its encoder) from it and tunes them
(method ``pt``). Reproduced: that transfer, under compt's few-shot protocol. Not reproduced: SPoT's large
source-task mixture and its prompt-similarity task selection ("targeted" SPoT).
"""

from __future__ import annotations

import copy
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

STAGE1_DIR = "stage1"


def spot_stages(cfg: DictConfig, output_dir: str | Path) -> tuple[DictConfig, DictConfig]:
    """The configs of stage 1 (shared prompt) and stage 2 (target prompts initialised from it)."""
    stage1, stage2 = copy.deepcopy(cfg), copy.deepcopy(cfg)
    with open_dict(stage1), open_dict(stage2):
        stage1.method.name = "spot_stage1"
        stage1.method.bank_method = "sources_only"
        stage1.method.n_sources = 1
        stage1.method.source_length = cfg.method.source_length
        stage1.router.learn = False
        stage1.optim.epochs = cfg.method.stage1_epochs
        stage1.eval.masks = ["total"]
        if cfg.method.source_tasks:
            stage1.tasks = OmegaConf.create({name: {} for name in cfg.method.source_tasks})
        stage2.method.bank_method = "pt"
        stage2.prompt.private_init_from = str(Path(output_dir) / STAGE1_DIR)
    return stage1, stage2
