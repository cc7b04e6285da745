"""``RunConfig``: the library objects of one run, built once from its config.

Training, ``compt evaluate`` and ``compt predict`` all start here: :meth:`RunConfig.from_hydra` takes a composed
Hydra config (``train.py``) or a run folder's recorded one (``RunDir(path).config()``), types it with
:class:`~compt.training.schema.TrainSchema` and builds the objects below; nothing reads the config again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from omegaconf import DictConfig

from compt.adapters.options import ADAPTER_OPTIONS
from compt.data.config import DataConfig
from compt.evaluation.config import EvalConfig
from compt.prompts.config import PromptBankConfig
from compt.prompts.router import RouterSchedule
from compt.tasks import TaskSpec, resolve_tasks
from compt.training.keys import built, knob_values
from compt.training.optim import OptimConfig, authors_step_count
from compt.training.schema import TrainSchema


@dataclass(frozen=True)
class RunSettings:
    """What a run is, beside its parts' settings."""

    method: str
    """the run's method as configured (``method.name``: a composition method, ``spot`` or ``pt_single``)"""
    protocol: str
    """paper | authors"""
    k: int
    """training examples per task"""
    seed: int
    """run seed (the data's and the bank initialisation's)"""
    model_name: str
    """the backbone (hub name or directory)"""
    backbone_dropout: bool
    """keep the backbone's dropout active in training"""
    backbone_dtype: str
    """the backbone's weight dtype (``fp32`` | ``bf16``)"""
    activation_checkpointing: bool
    """recompute the backbone's activations in the backward pass"""
    sources_init_from: str | None
    """a run or bank folder whose source prompts start this run's"""
    private_init_from: str | None
    """a run or bank folder whose first source prompt starts every private prompt"""
    deterministic: bool
    """torch deterministic algorithms"""


@dataclass
class RunConfig:
    """Everything a run builds from, as the library's own objects.

    ``bank.d_model`` is :class:`PromptBankConfig`'s default until the backbone is loaded:
    :class:`~compt.training.module.ComptModule` sets it to the backbone's width.
    """

    run: RunSettings
    tasks: list[TaskSpec]
    """the run's tasks in task-id order, with the run-wide text protocol applied"""
    data: DataConfig
    bank: PromptBankConfig
    optim: OptimConfig
    epochs: int
    """training epochs (the method's or ``optim.epochs``, doubled for small k)"""
    router: RouterSchedule
    evaluation: EvalConfig

    @classmethod
    def from_hydra(cls, cfg: DictConfig | dict[str, Any]) -> RunConfig:
        """The run's objects from a composed or recorded config (see :meth:`TrainSchema.from_hydra`)."""
        return cls.from_schema(TrainSchema.from_hydra(cfg))

    @classmethod
    def from_schema(cls, c: TrainSchema) -> RunConfig:
        """The run's objects from its typed config: the one place where config keys meet library fields."""
        m, p, r = c.method, c.prompt, c.router
        text_protocol = {
            "truncation": c.data.truncation,
            "regression_targets": c.data.regression_targets,
            "answer_parsing": c.eval.answer_parsing,
            "input_format": c.data.input_format,
        }
        tasks = [replace(task, **text_protocol) for task in resolve_tasks(c.tasks)]
        data = built(
            DataConfig,
            source=c.data.source,
            dir=c.data.dir,
            k=c.k,
            kshot_balanced=c.kshot.balanced,
            kshot_allow_fewer=c.kshot.allow_fewer,
            seed=c.seed,
            eval_max_samples=c.eval.max_samples,
            eval_seed=c.eval.seed,
            validation_from_train=c.data.validation_from_train,
            temperature=c.data.temperature,
            batch_size=c.data.batch_size,
            eval_batch_size=c.eval.batch_size,
            max_source_length=c.data.max_source_length,
            max_target_length=c.data.max_target_length,
            num_workers=c.data.num_workers,
            group_by_length=c.data.group_by_length,
            epoch_size=c.data.epoch_size,
        )
        bank = built(
            PromptBankConfig,
            method=m.bank_method or m.name,
            task_names=[task.name for task in tasks],
            n_sources=m.n_sources if m.n_sources is not None else c.n_sources,
            source_length=m.source_length,
            private_length=m.private_length,
            encoder=m.encoder or p.encoder,
            encoder_hidden=p.encoder_hidden,
            encoder_residual=p.encoder_residual,
            encoder_dropout=p.encoder_dropout,
            source_init_range=p.source_init_range,
            private_init=p.private_init,
            router_learn=r.learn,
            router_train_norm=r.train_norm,
            router_sample=r.sample,
            position=p.position,
            backbone=c.model.name,
            freeze_sources=c.sources.freeze,
            mpt_rank=m.mpt_rank,
            attempt_hidden=m.attempt_hidden,
            attempt_temperature=m.attempt_temperature,
            adapter=knob_values(c, *ADAPTER_OPTIONS.values()),
        )
        o = c.optim
        epochs = o.epochs_for(m.epochs, c.k)
        optim = built(
            OptimConfig,
            lr_router=o.lr.router,
            lr_sources=o.lr.sources,
            lr_private=o.lr.private,
            lr_adapter=o.lr.adapter,
            eps=o.eps,
            weight_decay=o.weight_decay,
            warmup_ratio=o.warmup_ratio,
            schedule=o.schedule,
            # the authors counted k rows per task; with every row (k <= 0) the run's real step count is used
            compat_steps=authors_step_count(c.k * len(tasks), epochs, c.data.batch_size)
            if o.schedule == "linear_compat" and c.k > 0
            else None,
        )
        router = built(RouterSchedule, r.anneal, r.tau0, r.tau_min, r.decrement, k=c.k)
        evaluation = built(
            EvalConfig,
            mode=c.eval.mode,
            max_new_tokens=c.eval.max_new_tokens,
            masks=tuple(c.eval.masks),
            metrics_compat=c.metrics.compat,
            repetition_penalty=c.eval.repetition_penalty,
            cross_prompts=c.eval.cross_prompts,
        )
        run = RunSettings(
            method=m.name,
            protocol=c.protocol,
            k=c.k,
            seed=c.seed,
            model_name=c.model.name,
            backbone_dropout=c.model.dropout,
            backbone_dtype=c.model.dtype,
            activation_checkpointing=c.model.activation_checkpointing,
            sources_init_from=c.sources.init_from,
            private_init_from=p.private_init_from,
            deterministic=c.deterministic,
        )
        return cls(run, tasks, data, bank, optim, epochs, router, evaluation)
