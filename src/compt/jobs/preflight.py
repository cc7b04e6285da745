"""Checks made before a run loads anything: config values that cannot work and folders that cannot be
written each fail with one ``compt: ...`` line naming the key, value or folder, instead of a traceback
minutes into the job (or a run saved as complete after 0 steps)."""

from __future__ import annotations

from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from compt.atomic import require_writable, writable_problem  # noqa: F401 (preflight's checks, used from here)
from compt.config.schema import WEIGHT_DTYPES, TrainSchema
from compt.errors import ConfigError, OutputWriteError
from compt.evaluation.config import EvalConfig
from compt.runs import RUN_ELSEWHERE
from compt.runs.claims import timing_problem

#: seeds numpy accepts (``pl.seed_everything`` seeds numpy too)
MAX_SEED = 2**32 - 1


#: the error of a folder a run cannot write (a file or a dangling link in the way, a read-only file system, no
#: permission)
OutputFolderError = OutputWriteError


def check_run_config(cfg: TrainSchema) -> None:
    """Refuse the config values that cannot make a run: no task, an unknown backbone dtype or evaluation mode
    (``eval.mode``, ``eval.cross_prompts``), a seed numpy rejects, zero epochs or steps, claim timings that would
    let two processes train the job.

    Raises:
        ConfigError: naming the key, its value and what is accepted.
    """
    if not cfg.tasks:
        raise ConfigError(
            "tasks= names no task; give a task set (tasks=glue, tasks=demo) or a list (tasks=[rte,mrpc])"
        )
    if cfg.model.dtype not in WEIGHT_DTYPES:
        raise ConfigError(
            f"model.dtype={cfg.model.dtype!r}; choose one of {', '.join(WEIGHT_DTYPES)} (fp16 is not offered: T5 "
            "overflows in it)"
        )
    EvalConfig(mode=cfg.eval.mode, cross_prompts=cfg.eval.cross_prompts)  # refuses an unknown mode
    seed = cfg.seed
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"seed={seed!r}: a seed is an integer in 0..{MAX_SEED}")
    epochs = cfg.optim.epochs_for(cfg.method.epochs, cfg.k)
    if epochs < 1:
        raise ConfigError(
            f"optim.epochs={cfg.optim.epochs!r} gives {epochs} training epochs; a run needs at least 1"
        )
    if cfg.callbacks.get("restore_best") and not cfg.data.validation_from_train:
        raise ConfigError(
            "callbacks.restore_best=true picks the best model on a development split, and the validation set is "
            "the test set here: set data.validation_from_train=N (rows per task carved from train)"
        )
    if cfg.trainer.get("max_steps", -1) == 0:
        raise ConfigError("trainer.max_steps=0 trains nothing; use -1 (no limit) or a positive number")
    claim_problem = timing_problem(cfg.claim.heartbeat_s, cfg.claim.stale_after_s)
    if claim_problem is not None:
        raise ConfigError(claim_problem)
    check_run_settings(cfg)
    check_data_files(cfg)
    check_trainer_arguments(cfg.trainer)  # last: a key outside TRAINER_ARGUMENTS imports Lightning


def check_run_settings(cfg: TrainSchema) -> None:
    """Build the run's settings as the run builds them (:meth:`RunConfig.from_schema`: data, bank, optimizer,
    router, evaluation) and its evaluation masks for that bank, so a value they refuse (``optim.lr.router=0``,
    ``eval.masks=[src7]`` on three sources, an option of another method) is one line at once, not after Lightning
    and the backbone have loaded. ``method=spot`` and ``pt_single`` build their parts' settings as each starts.

    Raises:
        ConfigError: naming the key and its value.
    """
    from compt.config.run_config import RunConfig
    from compt.prompts.masks import parse_mask
    from compt.prompts.methods import METHODS

    if (
        cfg.method.name not in METHODS
    ):  # a recipe of several parts (spot, pt_single): each part checks its own
        return
    run = RunConfig.from_schema(cfg)
    for mask in run.evaluation.expanded_masks(run.bank.n_sources):
        parse_mask(mask, run.bank.method, run.bank.n_sources)


#: ``Trainer`` arguments compt sets itself (from ``optim.epochs``, ``logger``, ``callbacks``, the run folder)
COMPT_TRAINER_ARGUMENTS = (
    "max_epochs",
    "logger",
    "callbacks",
    "enable_checkpointing",
    "default_root_dir",
    "use_distributed_sampler",
    "plugins",
)


#: ``Trainer`` arguments the configs of ``conf/trainer/`` and the docs set: known without importing Lightning
#: (seconds), so a run that fails on another value, or a finished job that is skipped, never loads it
#: (tests/test_preflight.py checks them against ``Trainer``'s signature)
TRAINER_ARGUMENTS = frozenset(
    {
        "accelerator",
        "accumulate_grad_batches",
        "check_val_every_n_epoch",
        "deterministic",
        "devices",
        "enable_model_summary",
        "enable_progress_bar",
        "gradient_clip_val",
        "limit_train_batches",
        "limit_val_batches",
        "log_every_n_steps",
        "max_steps",
        "num_nodes",
        "num_sanity_val_steps",
        "precision",
        "strategy",
        "val_check_interval",
    }
)


def check_trainer_arguments(trainer: dict[str, Any]) -> None:
    """Refuse a ``trainer.X`` that Lightning's ``Trainer`` does not take (``+trainer.X=`` adds any key), or that
    compt sets itself, before anything is loaded.

    Raises:
        ConfigError: naming the key and the closest argument.
    """
    import difflib

    for key in trainer:
        if key in COMPT_TRAINER_ARGUMENTS:
            raise ConfigError(
                f"trainer.{key} is set by compt (epochs: optim.epochs; loggers: logger=; callbacks: "
                "+callbacks=; the run folder: hydra.run.dir); remove it"
            )
    if set(trainer) <= TRAINER_ARGUMENTS:
        return
    known = trainer_argument_names()
    for key in trainer:
        if key not in known:
            closest = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f"; did you mean trainer.{closest[0]}?" if closest else ""
            raise ConfigError(
                f"unknown key trainer.{key}{hint} (trainer.* are the arguments of Lightning's Trainer)"
            )


def trainer_argument_names() -> list[str]:
    """The arguments of Lightning's ``Trainer`` (imports Lightning)."""
    import inspect

    from pytorch_lightning import Trainer

    return [name for name in inspect.signature(Trainer.__init__).parameters if name != "self"]


def check_data_files(cfg: TrainSchema) -> None:
    """Refuse a run whose local data lacks a split it reads, or holds it in a file without rows, before the
    backbone loads (:func:`compt.data.sources.require_local_files`).

    Raises:
        DataError: naming every missing file.
    """
    from compt.data.sources import require_local_files
    from compt.tasks import resolve_tasks

    tasks = resolve_tasks(cfg.tasks)
    if cfg.method.source_tasks:
        tasks += resolve_tasks(cfg.method.source_tasks)
    require_local_files(tasks, cfg.data.source, cfg.data.dir)


#: what a folder that cannot be written says to do
OTHER_FOLDER = f"train into another folder ({RUN_ELSEWHERE})"


class OutputFolderCheck(Callback):
    """Hydra callback (``conf/hydra/default.yaml``): before Hydra creates the run's or sweep's folder (where a
    failure would be a traceback), refuse one that cannot be written, in one ``compt:`` line."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _exit_unless_writable(config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _exit_unless_writable(config.hydra.sweep.dir)


def _exit_unless_writable(folder: str) -> None:
    try:
        require_writable(folder, OTHER_FOLDER)
    except OutputFolderError as err:
        raise SystemExit(f"compt: {err}") from None
