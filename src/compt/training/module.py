"""The LightningModule: a frozen backbone + the prompt bank, trained on mixed-task batches."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torch import Tensor

from compt.backbone import load_backbone
from compt.evaluation import Predictor, TaskMetrics
from compt.model import build_model
from compt.prompts import PromptBank, PromptBankConfig, parse_mask, temperature_at
from compt.prompts.router import compat_initial_temperature
from compt.tasks import TaskSpec
from compt.training.optim import OptimConfig, build_optimizer
from compt.utils import evaluating, finite_or_none

BACKBONE_PREFIX = "model.backbone."


class ComptModule(pl.LightningModule):
    """Trains the prompt bank of a :class:`ComptModel` (or its causal counterpart, by the backbone's family);
    evaluates by generation or rank classification.

    Every argument is plain data (stored with ``save_hyperparameters``, so ``torch.load(weights_only=True)``
    reads a checkpoint). Checkpoints hold the bank and optimizer state only, never the frozen backbone.

    Args:
        model_name: backbone hub name or directory (``tiny`` = the bundled tiny T5, ``tiny-causal`` = the
            bundled tiny causal LM).
        bank: :class:`PromptBankConfig` fields (``task_names`` and ``d_model`` filled in here if absent).
        tasks: ``{name: TaskSpec.to_dict()}`` in task-id order.
        optim: :class:`OptimConfig` fields.
        router: ``anneal`` (linear|step_compat), ``tau0``, ``tau_min``, ``decrement``, ``k`` (for step_compat).
        evaluation: ``mode`` (generate|rank), ``max_new_tokens``, ``masks`` (list of mask names; first = main;
            ``src*`` = every single-source mask ``src0 .. src{S-1}``, so one list serves sweeps over S).
        backbone_dropout: keep the backbone's dropout active in training (the authors' code did).
        metrics_compat: make the paper's reading (accuracy; stsb spearman) the primary metrics; both readings
            are computed either way (METHOD.md §6).
        seed: seed of the bank's initialisation.
    """

    def __init__(
        self,
        model_name: str,
        bank: dict[str, Any],
        tasks: dict[str, dict[str, Any]],
        optim: dict[str, Any] | None = None,
        router: dict[str, Any] | None = None,
        evaluation: dict[str, Any] | None = None,
        backbone_dropout: bool = True,
        metrics_compat: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.strict_loading = False  # checkpoints leave the frozen backbone out
        self.tasks = [TaskSpec.from_dict(name, definition) for name, definition in tasks.items()]
        self.optim_config = OptimConfig(**(optim or {}))
        self.router_config = {"anneal": "linear", "tau0": 5.0, "tau_min": 1e-3, "decrement": 0.02, "k": 16}
        self.router_config.update(router or {})
        evaluation = {"mode": "generate", "max_new_tokens": 8, "masks": ["total"], **(evaluation or {})}
        self.eval_masks = expand_masks(evaluation["masks"], int(bank.get("n_sources", 0)))

        backbone, self.tokenizer = load_backbone(model_name)
        d_model = backbone.get_input_embeddings().embedding_dim
        bank_config = PromptBankConfig.from_dict(
            {"task_names": [t.name for t in self.tasks], "d_model": d_model, "backbone": model_name, **bank}
        )
        generator = torch.Generator().manual_seed(seed)
        vocab = backbone.get_input_embeddings().weight
        self.model = build_model(backbone, PromptBank(bank_config, vocab, generator), backbone_dropout)
        for mask in self.eval_masks:  # a bad eval.masks entry fails now, not after training
            parse_mask(mask, bank_config.method, bank_config.n_sources)
        self.predictor = Predictor(
            self.tasks, self.tokenizer, evaluation["mode"], evaluation["max_new_tokens"]
        )
        self.eval_metrics = torch.nn.ModuleDict(
            {mask: TaskMetrics(self.tasks, metrics_compat) for mask in self.eval_masks}
        )
        self.predictions: list[dict[str, Any]] = []
        self.train()  # from_pretrained returns eval mode, and Lightning ≥ 2.2 keeps the modes it finds
        self.last_eval: dict[str, Any] = {}
        #: (global step, avg) at each validation during training
        self.val_curve: list[list[float]] = []

    @property
    def bank(self) -> PromptBank:
        return self.model.bank

    # ------------------------------------------------------------------ training
    def current_temperature(self) -> float:
        """τ for the current optimizer step (METHOD.md §3)."""
        c = self.router_config
        tau0 = compat_initial_temperature(int(c["k"])) if c["anneal"] == "step_compat" else c["tau0"]
        total = int(self.trainer.estimated_stepping_batches) if self._trainer else 1
        return temperature_at(self.global_step, total, c["anneal"], tau0, c["tau_min"], c["decrement"])

    def on_train_batch_start(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        if self.bank.router is not None:
            self.bank.router.temperature = self.current_temperature()

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = self.model(batch["input_ids"], batch["attention_mask"], batch["task_ids"], batch["labels"])
        size = len(batch["task_ids"])
        # the logger reads the step loss every log_every_n_steps; the progress bar shows the epoch mean, so no
        # step forces a host-device sync
        self.log("train/loss", loss, on_step=True, on_epoch=False, batch_size=size)
        self.log("loss", loss, on_step=False, on_epoch=True, prog_bar=True, logger=False, batch_size=size)
        logged = {f"lr/{g['name']}": g["lr"] for g in self.optimizers().optimizer.param_groups}
        if self.bank.router is not None:
            logged["router/temperature"] = self.bank.router.temperature
        self.log_dict(logged, on_step=True, on_epoch=False)
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        total = int(self.trainer.estimated_stepping_batches)
        optimizer, scheduler = build_optimizer(self.bank, self.optim_config, total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith(BACKBONE_PREFIX)]:
            del state[key]
        checkpoint["compt_val_curve"] = self.val_curve

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.val_curve = list(checkpoint.get("compt_val_curve", []))

    # ------------------------------------------------------------------ evaluation
    def _evaluate(self, batch: dict[str, Tensor], keep_predictions: bool) -> None:
        for index, mask in enumerate(self.eval_masks):
            predictions = self.predictor(self.model, batch, mask)
            self.eval_metrics[mask].update_batch(batch["task_ids"], predictions.values, batch["gold"])
            if keep_predictions and index == 0:
                self._keep(batch, predictions.texts, predictions.values)

    def _keep(self, batch: dict[str, Tensor], texts: list[str], values: Tensor) -> None:
        for row, (task, example, gold) in enumerate(
            zip(batch["task_ids"].tolist(), batch["example_ids"].tolist(), batch["gold"].tolist())
        ):
            value = finite_or_none(values[row].item())
            self.predictions.append(
                {
                    "task": self.tasks[task].name,
                    "example_id": example,
                    "prediction": texts[row],
                    "value": value,
                    "gold": gold,
                    "valid": value is not None,
                }
            )

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, keep_predictions=False)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, keep_predictions=True)

    def on_test_epoch_start(self) -> None:
        self.predictions = []

    def on_validation_epoch_end(self) -> None:
        self._finish_evaluation("val")

    def on_test_epoch_end(self) -> None:
        self._finish_evaluation("test")
        self.predictions = gather_objects(self.predictions)

    def _finish_evaluation(self, stage: str) -> None:
        results: dict[str, Any] = {}
        for mask in self.eval_masks:
            results[mask] = self.eval_metrics[mask].compute()
            self.eval_metrics[mask].reset()
        main = results[self.eval_masks[0]]
        logged = {
            f"{stage}/{task}/{name}": v for task, vals in main["tasks"].items() for name, v in vals.items()
        }
        logged[f"{stage}/avg"] = main["avg"]
        logged[f"{stage}/avg_paper"] = main["avg_paper"]
        logged.update({f"{stage}/{task}/invalid": float(n) for task, n in main["invalid"].items()})
        for mask, result in results.items():
            if mask != self.eval_masks[0]:
                logged[f"{stage}/mask/{mask}/avg"] = result["avg"]
        weights = self.router_weights()
        for task, row in (weights or {}).items():
            logged.update({f"router/{task}/src{i}": w for i, w in enumerate(row)})
        # The values are already the same on every rank (torchmetrics synced them in compute(); DDP keeps the
        # router in sync): sync_dist averages identical numbers, and keeps Lightning from warning about it.
        self.log_dict(logged, sync_dist=True)
        self.last_eval = {"stage": stage, "by_mask": results, "router_weights": weights}
        if stage == "val" and not self.trainer.sanity_checking:
            self.val_curve.append([self.global_step, main["avg"]])

    def router_weights(self) -> dict[str, list[float]] | None:
        """Evaluation-mode router weights per task, ``{task: [w_s ...]}``, or None for ``pt``."""
        if self.bank.router is None:
            return None
        with evaluating(self.bank), torch.no_grad():
            weights = self.bank.router_weights().cpu().tolist()
        return dict(zip(self.bank.task_names, weights))


def expand_masks(names: list[str], n_sources: int) -> list[str]:
    """Evaluation masks with ``src*`` replaced by ``src0 .. src{n_sources-1}`` (``["total"]`` if empty)."""
    out: list[str] = []
    for name in names or ["total"]:
        out += [f"src{i}" for i in range(n_sources)] if name == "src*" else [name]
    return list(dict.fromkeys(out))


def gather_objects(items: list[Any]) -> list[Any]:
    """Concatenate a list from every DDP rank (identity without DDP)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return items
    gathered: list[list[Any]] = [[] for _ in range(dist.get_world_size())]
    dist.all_gather_object(gathered, items)
    return [item for part in gathered for item in part]
