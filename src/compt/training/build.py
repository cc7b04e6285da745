"""The objects of one run, built from its (Hydra) config: the LightningModule, the data settings and the
number of epochs. Shared by the run driver (:mod:`compt.training.run`) and ``compt evaluate``."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from compt.data import DataConfig
from compt.training.init_from import initialise_bank
from compt.training.module import ComptModule

#: method-specific prompt bank options a method config may carry
METHOD_BANK_OPTIONS = ("mpt_rank", "attempt_hidden", "attempt_temperature")


def data_config(cfg: DictConfig) -> DataConfig:
    """The DataModule's settings from the run config."""
    d = cfg.data
    return DataConfig(
        source=d.source,
        dir=d.dir,
        k=cfg.k,
        kshot_balanced=cfg.kshot.balanced,
        kshot_allow_fewer=cfg.kshot.allow_fewer,
        seed=cfg.seed,
        eval_max_samples=cfg.eval.max_samples,
        eval_seed=cfg.eval.seed,
        validation_from_train=d.validation_from_train,
        temperature=d.temperature,
        batch_size=d.batch_size,
        eval_batch_size=cfg.eval.batch_size,
        max_source_length=d.max_source_length,
        max_target_length=d.max_target_length,
        num_workers=d.num_workers,
        group_by_length=d.group_by_length,
        epoch_size=d.epoch_size,
    )


def bank_settings(cfg: DictConfig) -> dict[str, Any]:
    """:class:`PromptBankConfig` fields from the run config (task names and d_model come from elsewhere).

    A method's config may set its own ``n_sources`` and ``encoder`` (mpt, attempt) and its own options
    (``mpt_rank``, ``attempt_*``); ``bank_method`` names the bank a multi-stage method trains (SPoT).
    """
    m, p = cfg.method, cfg.prompt
    settings = {
        "method": m.get("bank_method") or m.name,
        "n_sources": m.get("n_sources", cfg.n_sources),
        "source_length": m.source_length,
        "private_length": m.private_length,
        "encoder": m.get("encoder", p.encoder),
        "encoder_hidden": p.encoder_hidden,
        "encoder_residual": p.encoder_residual,
        "encoder_dropout": p.encoder_dropout,
        "source_init_range": p.source_init_range,
        "private_init": p.private_init,
        "router_learn": cfg.router.learn,
        "router_train_norm": cfg.router.train_norm,
        "router_sample": cfg.router.sample,
        "position": p.position,
        "freeze_sources": bool(OmegaConf.select(cfg, "sources.freeze", default=False)),
    }
    settings.update({key: m[key] for key in METHOD_BANK_OPTIONS if key in m})
    return settings


def epochs_for(cfg: DictConfig) -> int:
    """Training epochs: ``optim.epochs`` or the method's, doubled when k ≤ ``optim.double_epochs_max_k``."""
    epochs = cfg.optim.epochs if cfg.optim.epochs is not None else cfg.method.epochs
    if cfg.optim.double_epochs_max_k is not None and 0 < cfg.k <= cfg.optim.double_epochs_max_k:
        epochs *= 2
    return int(epochs)


def build_module(cfg: DictConfig, tasks: list, initialise: bool = True) -> ComptModule:
    """The LightningModule of a run config; ``initialise`` applies ``sources.init_from`` and
    ``prompt.private_init_from`` (left out when trained weights are loaded next)."""
    o, r = cfg.optim, cfg.router
    module = ComptModule(
        model_name=cfg.model.name,
        bank=bank_settings(cfg),
        tasks={t.name: {k: v for k, v in t.to_dict().items() if k != "name"} for t in tasks},
        optim={
            "lr_router": o.lr.router,
            "lr_sources": o.lr.sources,
            "lr_private": o.lr.private,
            "eps": o.eps,
            "weight_decay": o.weight_decay,
            "warmup_ratio": o.warmup_ratio,
            "schedule": o.schedule,
        },
        router={
            "anneal": r.anneal,
            "tau0": r.tau0,
            "tau_min": r.tau_min,
            "decrement": r.decrement,
            "k": cfg.k,
        },
        evaluation={
            "mode": cfg.eval.mode,
            "max_new_tokens": cfg.eval.max_new_tokens,
            "masks": list(cfg.eval.masks),
        },
        backbone_dropout=cfg.model.dropout,
        metrics_compat=cfg.metrics.compat,
        seed=cfg.seed,
    )
    if initialise:
        initialise_bank(
            module.bank,
            OmegaConf.select(cfg, "sources.init_from", default=None),
            OmegaConf.select(cfg, "prompt.private_init_from", default=None),
        )
    return module
