"""Train ComPT prompts: ``python train.py [overrides]`` or a sweep, ``python train.py -m method=ssum,msum k=8,16``.

Configs live in ``conf/``, typed by :class:`compt.training.schema.TrainSchema` (registered with Hydra on
importing :mod:`compt.training.launch`; see README). Each run writes results.json, predictions.jsonl, bank/ and
checkpoints/last.ckpt to its output folder.
"""

from __future__ import annotations

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from compt.errors import ComptError
from compt.training.launch import check_launch, joblib_gpu, shared_output_dir
from compt.training.run import train
from compt.training.schema import TrainSchema


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the run's average metric (for Hydra sweepers)."""
    hydra_cfg = HydraConfig.get()
    try:
        check_launch(cfg, hydra_cfg)
        output_dir = shared_output_dir(hydra_cfg.runtime.output_dir)
        with joblib_gpu(cfg, hydra_cfg):
            results = train(TrainSchema.from_hydra(cfg), output_dir, list(hydra_cfg.overrides.task))
    except ComptError as err:  # a user's mistake: one line that says what to do, not a stack trace
        raise SystemExit(f"compt: {err}") from None
    return None if not results else results.get("avg")


if __name__ == "__main__":
    main()
