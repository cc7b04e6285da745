"""Small callbacks: training curves kept for results.json without a host sync per step."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch


class CurveRecorder(pl.Callback):
    """Mean training loss per epoch, for the report's plots (the module keeps the validation curve).

    Losses stay on the device during an epoch and are read once at its end.
    """

    def __init__(self) -> None:
        self.epoch_losses: list[torch.Tensor] = []
        self.train_loss: list[tuple[int, float]] = []

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None:
            self.epoch_losses.append(loss.detach())

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if self.epoch_losses:
            self.train_loss.append((trainer.global_step, torch.stack(self.epoch_losses).mean().item()))
        self.epoch_losses = []

    def state_dict(self) -> dict[str, Any]:
        return {"train_loss": [list(p) for p in self.train_loss]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.train_loss = [tuple(p) for p in state_dict.get("train_loss", [])]
