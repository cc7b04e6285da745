"""Re-evaluate a trained run (its bank or a checkpoint), optionally under the ablation masks of the
source-masking analysis (paper Figs. 3/4/6): the library behind ``compt evaluate``.

The run's recorded config rebuilds its objects (:class:`compt.config.run_config.RunConfig`), LightningModule and
data; its trained weights are loaded into the bank and Lightning's ``Trainer.test`` evaluates every mask, as at
the end of training.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from compt.config.run_config import RunConfig
from compt.errors import InferenceError
from compt.prompts import PromptBank, masks_for
from compt.runs import RunDir, load_bank
from compt.runtime.noise import quiet_known_noise
from compt.training.build import build_module
from compt.training.datamodule import ComptDataModule

#: ``ComptModule``'s state-dict prefix of the bank's weights in a Lightning checkpoint
BANK_PREFIX = "model.bank."


def evaluate_run(
    run_dir: str | Path,
    masks: list[str] | None = None,
    checkpoint: str | Path | None = None,
    mode: str | None = None,
    max_samples: int | None = None,
    accelerator: str = "auto",
) -> dict[str, Any]:
    """Evaluate the run's final bank (or ``checkpoint``) under each mask; returns ``{mask: metrics}``.

    ``masks=["all"]`` is every mask of the run's method; None keeps the run's ``eval.masks``.
    """
    run_dir = Path(run_dir)
    config = RunConfig.from_hydra(RunDir(run_dir).config())
    if masks == ["all"]:
        masks = masks_for(config.bank.method, config.bank.n_sources)
    config.evaluation = replace(
        config.evaluation, masks=tuple(masks or config.evaluation.masks), mode=mode or config.evaluation.mode
    )
    if max_samples is not None:
        config.data = replace(config.data, eval_max_samples=max_samples)
    module = build_module(config, initialise=False)
    load_trained_bank(module.model.bank, run_dir, checkpoint)
    datamodule = ComptDataModule(config.tasks, module.tokenizer, config.data)
    quiet_known_noise()
    trainer = pl.Trainer(accelerator=accelerator, devices=1, logger=False, enable_model_summary=False)
    trainer.test(module, datamodule=datamodule, verbose=False)
    return module.last_eval["by_mask"]


def load_trained_bank(bank: PromptBank, run_dir: Path, checkpoint: str | Path | None) -> None:
    """Copy trained weights into ``bank``: from a Lightning checkpoint, or the run's saved ``bank/``."""
    if checkpoint is not None:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
        bank.load_state_dict(
            {k[len(BANK_PREFIX) :]: v for k, v in state.items() if k.startswith(BANK_PREFIX)}
        )
        return
    saved = load_bank(run_dir, d_model=bank.config.d_model)
    if saved.config.encoder != bank.config.encoder:
        raise InferenceError(
            f"{RunDir(run_dir).bank_dir} holds a folded bank (encoder=none); evaluate it from a checkpoint"
        )
    bank.load_state_dict(saved.state_dict())
