"""Train ComPT prompts: ``python train.py [overrides]`` or a sweep, ``python train.py -m method=ssum,msum k=8,16``.

Configs live in ``conf/`` (see README). Each run writes results.json, predictions.jsonl, bank/ and
checkpoints/last.ckpt to its output folder.
"""

from __future__ import annotations

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from compt.errors import ComptError
from compt.training.divergence import RunDiverged
from compt.training.job import run_job
from compt.training.launch import check_launch, joblib_gpu, shared_output_dir
from compt.training.runlog import route_run_log, to_log_file


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the run's average metric (for Hydra sweepers)."""
    hydra_cfg = HydraConfig.get()
    route_run_log()
    try:
        check_launch(cfg, hydra_cfg)
        output_dir = shared_output_dir(hydra_cfg.runtime.output_dir)
        with joblib_gpu(cfg, hydra_cfg):
            results = run_job(cfg, output_dir, list(hydra_cfg.overrides.task))
    except ComptError as err:  # a user's mistake or a diverged run: one line, not a stack trace
        line = f"compt: {err}"
        to_log_file(line, logging.ERROR)
        if isinstance(err, RunDiverged) and hydra_cfg.mode == RunMode.MULTIRUN:
            print(line, file=sys.stderr)  # a result, not a crash: the rest of the sweep goes on
            return None
        raise SystemExit(line) from None
    return None if not results else results.get("avg")


if __name__ == "__main__":
    main()
