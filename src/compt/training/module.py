"""The LightningModule: a frozen backbone + the prompt bank, trained on mixed-task batches."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn.modules.module import _IncompatibleKeys

from compt.errors import ConfigError
from compt.evaluation import EvalConfig, Predictions, Predictor, TaskMetrics
from compt.models.backbone import checkpoint_activations, load_backbone, weights_dtype
from compt.models.family import build_model
from compt.optim import OptimConfig, build_optimizer
from compt.prompts import PromptBank, PromptBankConfig, RouterSchedule, parse_mask
from compt.prompts.bank import new_bank
from compt.tasks import TaskSpec
from compt.utils import evaluating, finite_or_none

BACKBONE_PREFIX = "model.backbone."


class ComptModule(pl.LightningModule):
    """Trains the prompt bank of a :class:`ComptModel` (or its causal counterpart, by the backbone's family);
    evaluates by generation or rank classification.

    The arguments are the run's objects (:class:`compt.config.run_config.RunConfig`); they are stored as plain
    dicts with ``save_hyperparameters``, so ``torch.load(weights_only=True)`` reads a checkpoint, and the same
    plain dicts are accepted back, so Lightning's ``ComptModule.load_from_checkpoint(path)`` rebuilds the
    module. Checkpoints hold the bank and optimizer state only, never the frozen backbone.

    Args:
        model_name: backbone hub name or directory (``tiny`` = the bundled tiny T5, ``tiny-causal`` = the
            bundled tiny causal LM).
        bank: the bank's settings; ``d_model`` is set here to the backbone's width.
        tasks: the tasks, in task-id order (= ``bank.task_names``).
        optim: the optimizer's settings.
        router: the router's temperature schedule.
        evaluation: prediction mode, generation length, masks (first = main), metric reading and the
            cross-task prompt matrix (``cross_prompts``).
        backbone_dropout: keep the backbone's dropout active in training (the authors' code did).
        seed: seed of the bank's initialisation.
        backbone_dtype: the frozen backbone's weight dtype, ``fp32`` or ``bf16`` (the bank stays fp32).
        activation_checkpointing: recompute the backbone's activations in the backward pass.
    """

    def __init__(
        self,
        model_name: str,
        bank: PromptBankConfig | Mapping[str, Any],
        tasks: Sequence[TaskSpec] | Mapping[str, Mapping[str, Any]],
        optim: OptimConfig | Mapping[str, Any],
        router: RouterSchedule | Mapping[str, Any],
        evaluation: EvalConfig | Mapping[str, Any],
        backbone_dropout: bool,
        seed: int,
        backbone_dtype: str = "fp32",
        activation_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        self.strict_loading = False  # checkpoints leave the frozen backbone out
        if isinstance(bank, Mapping):  # the plain dicts of a checkpoint's hyperparameters
            bank = PromptBankConfig.from_dict(dict(bank))
            tasks = [TaskSpec.from_dict(name, definition) for name, definition in tasks.items()]
            optim, router, evaluation = (
                OptimConfig(**optim),
                RouterSchedule(**router),
                EvalConfig(**evaluation),
            )
        self.tasks = list(tasks)
        if [t.name for t in self.tasks] != bank.task_names:
            raise ConfigError(
                f"the bank's tasks {bank.task_names} are not the run's {[t.name for t in self.tasks]}"
            )
        self.optim_config, self.schedule, self.evaluation = optim, router, evaluation
        self.eval_masks = evaluation.expanded_masks(bank.n_sources)

        backbone, self.tokenizer = load_backbone(model_name, weights_dtype(backbone_dtype))
        if activation_checkpointing:
            checkpoint_activations(backbone)
        bank = replace(bank, d_model=backbone.get_input_embeddings().embedding_dim)
        self.save_hyperparameters(
            {
                "model_name": model_name,
                "bank": bank.to_dict(),
                "tasks": {t.name: {k: v for k, v in t.to_dict().items() if k != "name"} for t in self.tasks},
                "optim": asdict(optim),
                "router": asdict(router),
                "evaluation": evaluation.to_dict(),
                "backbone_dropout": backbone_dropout,
                "seed": seed,
                "backbone_dtype": backbone_dtype,
                "activation_checkpointing": activation_checkpointing,
            }
        )
        generator = torch.Generator().manual_seed(seed)
        vocab = backbone.get_input_embeddings().weight
        self.model = build_model(backbone, new_bank(bank, vocab, generator), backbone_dropout)
        for mask in self.eval_masks:  # a bad eval.masks entry fails now, not after training
            parse_mask(mask, bank.method, bank.n_sources)
        if evaluation.cross_prompts is not None and bank.traits.adapter is not None:
            raise ConfigError(
                f"eval.cross_prompts answers every task under every task's prompt; method={bank.method} trains "
                "one adapter shared by every task (the task is named in the text): leave eval.cross_prompts unset"
            )
        self.predictor = Predictor(
            self.tasks,
            self.tokenizer,
            evaluation.mode,
            evaluation.max_new_tokens,
            evaluation.repetition_penalty,
        )
        self.eval_metrics = torch.nn.ModuleDict(
            {mask: TaskMetrics(self.tasks, evaluation.metrics_compat) for mask in self.eval_masks}
        )
        #: with ``eval.cross_prompts``: the predictor and, per prompt task, the metrics of every task under it
        self.cross_predictor = self._cross_predictor(evaluation)
        self.cross_metrics = torch.nn.ModuleDict(
            {t.name: TaskMetrics(self.tasks, evaluation.metrics_compat) for t in self.tasks}
            if self.cross_predictor is not None
            else {}
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
        """τ for the current optimizer step (docs/method.md §3)."""
        total = int(self.trainer.estimated_stepping_batches) if self._trainer else 1
        return self.schedule.temperature(self.global_step, total)

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

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        """``nn.Module.load_state_dict``, except that the frozen backbone's weights, which checkpoints leave out
        by design (:meth:`on_save_checkpoint`; they come from ``model_name``), never count as missing: Lightning's
        ``load_from_checkpoint`` then warns only about keys that are really missing or unexpected."""
        keys = super().load_state_dict(state_dict, strict=False, assign=assign)
        missing = [key for key in keys.missing_keys if not key.startswith(BACKBONE_PREFIX)]
        if strict and (missing or keys.unexpected_keys):
            raise RuntimeError(
                f"Error(s) in loading state_dict for {type(self).__name__}: missing keys {missing}, "
                f"unexpected keys {keys.unexpected_keys}"
            )
        return _IncompatibleKeys(missing, keys.unexpected_keys)

    # ------------------------------------------------------------------ evaluation
    def _cross_predictor(self, evaluation: EvalConfig) -> Predictor | None:
        if evaluation.cross_prompts is None:
            return None
        if evaluation.cross_prompts == evaluation.mode:
            return self.predictor
        return Predictor(
            self.tasks,
            self.tokenizer,
            evaluation.cross_prompts,
            evaluation.max_new_tokens,
            evaluation.repetition_penalty,
        )

    def _evaluate(self, batch: dict[str, Tensor], keep_predictions: bool) -> None:
        for mask in self.eval_masks:
            predictions = self.predictor(self.model, batch, mask)
            self._update(self.eval_metrics[mask], batch, predictions)
            if keep_predictions:  # every mask's: the per-mask confusion tables (paper Tables 5, 6, A1)
                self._keep(batch, mask, predictions)

    def _evaluate_cross(self, batch: dict[str, Tensor]) -> None:
        """Every row answered under every task's prompt (main mask): the task × prompt matrix."""
        if self.cross_predictor is None:
            return
        for index, task in enumerate(self.tasks):
            prompt_ids = torch.full_like(batch["task_ids"], index)
            predictions = self.cross_predictor(self.model, batch, self.eval_masks[0], prompt_ids)
            self._update(self.cross_metrics[task.name], batch, predictions)

    @staticmethod
    def _update(metrics: TaskMetrics, batch: dict[str, Any], predictions: Predictions) -> None:
        """Score one batch's predictions, with what the rows carry of their answers (texts, choices, groups)."""
        metrics.update_batch(
            batch["task_ids"],
            predictions.values,
            batch["gold"],
            valid=predictions.valid,
            texts=predictions.texts,
            answers=batch.get("answers"),
            choices=batch.get("choices"),
            groups=batch.get("groups"),
        )

    def _keep(self, batch: dict[str, Any], mask: str, predictions: Predictions) -> None:
        for row, (task, example, gold) in enumerate(
            zip(batch["task_ids"].tolist(), batch["example_ids"].tolist(), batch["gold"].tolist())
        ):
            self.predictions.append(
                {
                    "task": self.tasks[task].name,
                    "mask": mask,
                    "example_id": example,
                    "prediction": predictions.texts[row],
                    "value": finite_or_none(predictions.values[row].item()),
                    "gold": finite_or_none(gold),
                    "valid": bool(predictions.valid[row]),
                }
            )
            if predictions.generated and predictions.generated[row] is not None:
                self.predictions[-1]["generated"] = predictions.generated[row]

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, keep_predictions=False)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, keep_predictions=True)
        self._evaluate_cross(batch)

    def on_test_epoch_start(self) -> None:
        self.predictions = []

    def on_validation_epoch_end(self) -> None:
        self._finish_evaluation("val")

    def on_test_epoch_end(self) -> None:
        self._finish_evaluation("test")
        self.last_eval["cross_prompts"] = self._finish_cross()
        self.predictions = gather_objects(self.predictions)

    def _finish_cross(self) -> dict[str, Any] | None:
        """``{prompt task: metrics of every task under its prompt}`` (None without ``eval.cross_prompts``)."""
        if self.cross_predictor is None:
            return None
        out = {}
        for name, metrics in self.cross_metrics.items():
            out[name] = metrics.compute()
            metrics.reset()
        return out

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

    def router_logits(self) -> dict[str, list[float]] | None:
        """The router's learned logits W per task, ``{task: [W_s ...]}`` (the paper's Fig. 6 shows them), or None
        without a learned router (``pt``, ``router.learn=false``)."""
        router = self.bank.router
        if router is None or router.logits is None:
            return None
        return dict(zip(self.bank.task_names, router.logits.detach().cpu().tolist()))


def gather_objects(items: list[Any]) -> list[Any]:
    """Concatenate a list from every DDP rank (identity without DDP)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return items
    gathered: list[list[Any]] = [[] for _ in range(dist.get_world_size())]
    dist.all_gather_object(gathered, items)
    return [item for part in gathered for item in part]
