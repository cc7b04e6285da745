"""``RunConfig``: the library objects of one run, built once from its config.

Training, ``compt evaluate`` and ``compt predict`` all start here: :meth:`RunConfig.from_hydra` takes a composed
Hydra config (``train.py``) or a run folder's recorded one (``RunDir(path).config()``), types it with
:class:`~compt.config.schema.TrainSchema` and builds the objects below; nothing reads the config again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from omegaconf import DictConfig

from compt.adapters.options import ADAPTER_OPTIONS
from compt.config.keys import built
from compt.config.knobs import LIBRARY, knob_values, knobs, option_classes
from compt.config.schema import TrainSchema
from compt.data.config import DataConfig
from compt.evaluation.config import EvalConfig
from compt.optim import OptimConfig, authors_step_count
from compt.prompts.config import PromptBankConfig
from compt.prompts.router import RouterSchedule
from compt.tasks import TaskSpec, resolve_tasks


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
        """The run's objects from its typed config. Every knob goes to its library field
        (:func:`compt.config.knobs.knob_values`); what is written here are the keys that cross sections: the
        method preset's choices (the bank's method, ``method.n_sources``, ``method.encoder``), the epochs, the
        authors' step count, the router's k, the backbone, and the run's own settings."""
        m, lib, every = c.method, LIBRARY, knobs()

        def values(part: str, **crossing: Any) -> dict[str, Any]:
            return {**knob_values(c, lib[part], every), **crossing}

        tasks = [replace(task, **values("tasks")) for task in resolve_tasks(c.tasks)]
        options: dict[str, Any] = {}
        adapter: dict[str, Any] = {}
        for option_class in option_classes():
            own = adapter if option_class in ADAPTER_OPTIONS.values() else options
            own.update(knob_values(c, option_class, every))
        bank = built(
            lib["bank"],
            **values(
                "bank",
                method=m.bank_method or m.name,
                task_names=[task.name for task in tasks],
                n_sources=m.n_sources if m.n_sources is not None else c.n_sources,
                encoder=m.encoder or c.prompt.encoder,
                backbone=c.model.name,
                options=options,
                adapter=adapter,
            ),
        )
        epochs = c.optim.epochs_for(m.epochs, c.k)
        # the authors counted k rows per task; with every row (k <= 0) the run's real step count is used
        linear_compat = c.optim.schedule == "linear_compat" and c.k > 0
        compat_steps = (
            authors_step_count(c.k * len(tasks), epochs, c.data.batch_size) if linear_compat else None
        )
        return cls(
            run=run_settings(c),
            tasks=tasks,
            data=built(lib["data"], **values("data")),
            bank=bank,
            optim=built(lib["optim"], **values("optim", compat_steps=compat_steps)),
            epochs=epochs,
            router=built(lib["router"], **values("router", k=c.k)),
            evaluation=built(lib["evaluation"], **values("evaluation")),
        )


def run_settings(c: TrainSchema) -> RunSettings:
    """What the run is, beside its parts' settings: its own keys."""
    return RunSettings(
        method=c.method.name,
        protocol=c.protocol,
        k=c.k,
        seed=c.seed,
        model_name=c.model.name,
        backbone_dropout=c.model.dropout,
        backbone_dtype=c.model.dtype,
        activation_checkpointing=c.model.activation_checkpointing,
        sources_init_from=c.sources.init_from,
        private_init_from=c.prompt.private_init_from,
        deterministic=c.deterministic,
    )
