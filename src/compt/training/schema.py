"""The schema of ``conf/train.yaml``: every key a user types, its type, its default and its doc, in one place.

Hydra composes ``conf/train.yaml`` on top of :class:`TrainSchema` (registered in Hydra's ConfigStore as
``compt_schema`` by :mod:`compt.training.launch`), so the YAML files hold only group choices and the values that
differ from these defaults (method presets, experiments, protocols, sweeps), and a typo'd key or a value of the
wrong type fails at composition. :meth:`compt.training.config.RunConfig.from_hydra` turns the composed config
into the library's objects.

A field whose docstring is ``→ Class.field`` passes straight to that library field, which holds its default and
its doc; the other fields are the run's own and are documented here. ``trainer``, ``logger``, ``callbacks``,
``paths`` and ``tasks`` are free-form (Lightning's ``Trainer`` arguments, the logger, callbacks and paths groups,
and task name -> overrides).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from compt.claims import HEARTBEAT_S, STALE_AFTER_S
from compt.data.config import DataConfig
from compt.errors import ConfigError
from compt.evaluation.config import EvalConfig
from compt.prompts.config import PromptBankConfig
from compt.prompts.router import RouterSchedule
from compt.tasks import TaskSpec
from compt.training.optim import OptimConfig

#: compt's own callback settings (the ``callbacks`` node also takes extra Lightning callbacks)
COMPT_CALLBACK_SETTINGS = {
    "checkpoint_every_n_epochs": 5,
    "keep_last_checkpoint": True,
    "restore_best": False,
}


@dataclass
class ClaimSection:
    """``claim.*``: the claim each job puts on its folder (``.compt-claim``, :mod:`compt.claims`), so that a
    second process (a double submission, an early requeue) skips a job a live process trains."""

    heartbeat_s: float = HEARTBEAT_S
    """the holder refreshes its claim this often (seconds)"""
    stale_after_s: float = STALE_AFTER_S
    """a claim not refreshed this long is taken over (its node died); keep it above the clock skew between
    nodes"""


@dataclass
class MethodSection:
    """``method.*``: a method's preset (``conf/method/<name>.yaml``). Method-specific options are None (or their
    library default) for the methods that do not read them."""

    name: str = MISSING
    """the method: a composition method of :data:`compt.prompts.METHODS`, or a run made of several (``spot``,
    ``pt_single``); set by the preset"""
    source_length: int = PromptBankConfig.source_length
    """→ PromptBankConfig.source_length"""
    private_length: int | None = PromptBankConfig.private_length
    """→ PromptBankConfig.private_length"""
    epochs: int = 50
    """training epochs of the method (``optim.epochs`` overrides; doubled when k ≤ ``optim.double_epochs_max_k``)"""
    n_sources: int | None = None
    """the method's own S, replacing the top-level ``n_sources`` (mpt: 1); None = ``n_sources``"""
    encoder: str | None = None
    """the method's own prompt encoder, replacing ``prompt.encoder`` (mpt, attempt: none); None = ``prompt.encoder``"""
    mpt_rank: int = PromptBankConfig.mpt_rank
    """→ PromptBankConfig.mpt_rank"""
    attempt_hidden: int | None = PromptBankConfig.attempt_hidden
    """→ PromptBankConfig.attempt_hidden"""
    attempt_temperature: float | None = PromptBankConfig.attempt_temperature
    """→ PromptBankConfig.attempt_temperature"""
    stage1_epochs: int | None = None
    """spot only: epochs of stage 1 (the shared prompt); ``epochs`` are stage 2's"""
    source_tasks: list[str] | None = None
    """spot only: the tasks of stage 1, e.g. [mnli, qnli, qqp, sst2]; None = the run's tasks"""
    bank_method: str | None = None
    """the composition method of the bank this run trains when it is not ``name``; set by the runs a method is
    made of (spot's stages, pt_single's per-task runs), never by hand"""


#: ``model.dtype`` values (:data:`compt.backbone.BACKBONE_DTYPES` maps them to torch dtypes)
WEIGHT_DTYPES = ("fp32", "bf16")


@dataclass
class ModelSection:
    """``model.*``: the frozen backbone (``conf/model/<name>.yaml``)."""

    name: str = MISSING
    """the backbone: a T5-family seq2seq model (t5-base, google/flan-t5-base, ...) or a decoder-only causal LM
    (HuggingFaceTB/SmolLM2-135M, Qwen/Qwen2.5-0.5B, ...), hub name or local directory; the family is read from
    the model's config. ``tiny`` / ``tiny-causal`` = the bundled tiny models"""
    dropout: bool = True
    """keep the frozen backbone's dropout active during training (the authors' code did)"""
    dtype: str = "fp32"
    """the frozen backbone's weights: fp32 | bf16 (half the memory and no per-step weight casts under
    bf16-mixed, for large causal LMs on GPUs; the prompts, router and optimizer stay fp32)"""
    activation_checkpointing: bool = False
    """recompute the backbone's activations in the backward pass instead of keeping them: less memory for
    long inputs or large models, a slower train step"""


@dataclass
class PromptSection:
    """``prompt.*``: the prompts' placement, encoders and initialisation."""

    position: str = PromptBankConfig.position
    """→ PromptBankConfig.position"""
    encoder: str = PromptBankConfig.encoder
    """→ PromptBankConfig.encoder"""
    encoder_hidden: int | None = PromptBankConfig.encoder_hidden
    """→ PromptBankConfig.encoder_hidden"""
    encoder_residual: bool = PromptBankConfig.encoder_residual
    """→ PromptBankConfig.encoder_residual"""
    encoder_dropout: float = PromptBankConfig.encoder_dropout
    """→ PromptBankConfig.encoder_dropout"""
    source_init_range: float = PromptBankConfig.source_init_range
    """→ PromptBankConfig.source_init_range"""
    private_init: str = PromptBankConfig.private_init
    """→ PromptBankConfig.private_init"""
    private_init_from: str | None = None
    """a run (or bank) folder: every private prompt starts as its first source prompt (SPoT's stage 2)"""


@dataclass
class SourcesSection:
    """``sources.*``: source prompts taken from an earlier run."""

    init_from: str | None = None
    """a run (or bank) folder whose source prompts start this run's (any method with sources)"""
    freeze: bool = PromptBankConfig.freeze_sources
    """→ PromptBankConfig.freeze_sources"""


@dataclass
class RouterSection:
    """``router.*``: the router's weights and its temperature schedule."""

    learn: bool = PromptBankConfig.router_learn
    """→ PromptBankConfig.router_learn"""
    sample: str = PromptBankConfig.router_sample
    """→ PromptBankConfig.router_sample"""
    train_norm: str = PromptBankConfig.router_train_norm
    """→ PromptBankConfig.router_train_norm"""
    anneal: str = RouterSchedule.anneal
    """→ RouterSchedule.anneal"""
    tau0: float = RouterSchedule.tau0
    """→ RouterSchedule.tau0"""
    tau_min: float = RouterSchedule.tau_min
    """→ RouterSchedule.tau_min"""
    decrement: float = RouterSchedule.decrement
    """→ RouterSchedule.decrement"""


@dataclass
class KshotSection:
    """``kshot.*``: how the k training examples per task are drawn."""

    balanced: bool = DataConfig.kshot_balanced
    """→ DataConfig.kshot_balanced"""
    allow_fewer: bool = DataConfig.kshot_allow_fewer
    """→ DataConfig.kshot_allow_fewer"""


@dataclass
class DataSection:
    """``data.*``: where the task data comes from, how it is batched, tokenised and written as text."""

    source: str = DataConfig.source
    """→ DataConfig.source"""
    dir: str | None = DataConfig.dir
    """→ DataConfig.dir"""
    temperature: float = DataConfig.temperature
    """→ DataConfig.temperature"""
    batch_size: int = DataConfig.batch_size
    """→ DataConfig.batch_size"""
    max_source_length: int = DataConfig.max_source_length
    """→ DataConfig.max_source_length"""
    max_target_length: int = DataConfig.max_target_length
    """→ DataConfig.max_target_length"""
    truncation: str = TaskSpec.truncation
    """→ TaskSpec.truncation, for every task of the run"""
    regression_targets: str = TaskSpec.regression_targets
    """→ TaskSpec.regression_targets, for every task of the run"""
    input_format: str = TaskSpec.input_format
    """→ TaskSpec.input_format, for every task of the run"""
    validation_from_train: int = DataConfig.validation_from_train
    """→ DataConfig.validation_from_train"""
    num_workers: int = DataConfig.num_workers
    """→ DataConfig.num_workers"""
    group_by_length: bool = DataConfig.group_by_length
    """→ DataConfig.group_by_length"""
    epoch_size: int | None = DataConfig.epoch_size
    """→ DataConfig.epoch_size"""


@dataclass
class EvalSection:
    """``eval.*``: the evaluation examples and how they are predicted."""

    mode: str = EvalConfig.mode
    """→ EvalConfig.mode"""
    max_samples: int = DataConfig.eval_max_samples
    """→ DataConfig.eval_max_samples"""
    seed: int = DataConfig.eval_seed
    """→ DataConfig.eval_seed"""
    batch_size: int = DataConfig.eval_batch_size
    """→ DataConfig.eval_batch_size"""
    max_new_tokens: int = EvalConfig.max_new_tokens
    """→ EvalConfig.max_new_tokens"""
    repetition_penalty: float = EvalConfig.repetition_penalty
    """→ EvalConfig.repetition_penalty"""
    masks: list[str] = field(default_factory=lambda: list(EvalConfig.masks))
    """→ EvalConfig.masks"""
    cross_prompts: str | None = EvalConfig.cross_prompts
    """→ EvalConfig.cross_prompts"""
    answer_parsing: str = TaskSpec.answer_parsing
    """→ TaskSpec.answer_parsing, for every task of the run"""


@dataclass
class MetricsSection:
    """``metrics.*``: which reading of the metrics is primary."""

    compat: bool = EvalConfig.metrics_compat
    """→ EvalConfig.metrics_compat"""


@dataclass
class LearningRates:
    """``optim.lr.*``: one learning rate per parameter group."""

    router: float = OptimConfig.lr_router
    """→ OptimConfig.lr_router"""
    sources: float = OptimConfig.lr_sources
    """→ OptimConfig.lr_sources"""
    private: float = OptimConfig.lr_private
    """→ OptimConfig.lr_private"""


@dataclass
class OptimSection:
    """``optim.*``: AdamW, its schedule and the number of epochs (``conf/optim/<name>.yaml``)."""

    lr: LearningRates = field(default_factory=LearningRates)
    """the three groups' learning rates"""
    eps: float = OptimConfig.eps
    """→ OptimConfig.eps"""
    weight_decay: float = OptimConfig.weight_decay
    """→ OptimConfig.weight_decay"""
    warmup_ratio: float = OptimConfig.warmup_ratio
    """→ OptimConfig.warmup_ratio"""
    schedule: str = OptimConfig.schedule
    """→ OptimConfig.schedule"""
    epochs: int | None = None
    """training epochs; None = the method's (``method.epochs``)"""
    double_epochs_max_k: int | None = 10
    """the epochs are doubled when 0 < k ≤ this (the paper); None = never"""

    def epochs_for(self, method_epochs: int, k: int) -> int:
        """Training epochs: ``epochs`` or the method's, doubled when 0 < k ≤ ``double_epochs_max_k``."""
        epochs = self.epochs if self.epochs is not None else method_epochs
        if self.double_epochs_max_k is not None and 0 < k <= self.double_epochs_max_k:
            epochs *= 2
        return int(epochs)


@dataclass
class TrainSchema:
    """The whole run config (``conf/train.yaml`` composed with its groups), typed."""

    seed: int = DataConfig.seed
    """run seed: the k-shot sample, the training stream and the prompt initialisation (→ DataConfig.seed)"""
    k: int = DataConfig.k
    """→ DataConfig.k (also τ0 of ``router.anneal=step_compat``)"""
    n_sources: int = PromptBankConfig.n_sources
    """→ PromptBankConfig.n_sources (ignored by methods without sources)"""
    name: str = "default"
    """sweep name: ``-m`` jobs go to ``multirun/<name>/<overrides>``"""
    force: bool = False
    """re-run a complete or diverged job from scratch (marked once: a requeue of that re-run resumes it)"""
    deterministic: bool = False
    """torch deterministic algorithms (bit-reproducible resumes on CPU)"""
    portable_cpu: bool = False
    """CPU arithmetic that gives the same numbers on any x86-64 machine: one thread, unvectorised torch kernels,
    MKL's compatible path, no oneDNN (:mod:`compt.training.numerics`; slower; the demos set it)"""
    protocol: str = "paper"
    """paper (the paper's text) | authors (the authors' code, ``conf/protocol/authors.yaml``); recorded in
    results.json"""
    method: MethodSection = field(default_factory=MethodSection)
    model: ModelSection = field(default_factory=ModelSection)
    prompt: PromptSection = field(default_factory=PromptSection)
    sources: SourcesSection = field(default_factory=SourcesSection)
    router: RouterSection = field(default_factory=RouterSection)
    kshot: KshotSection = field(default_factory=KshotSection)
    data: DataSection = field(default_factory=DataSection)
    eval: EvalSection = field(default_factory=EvalSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    optim: OptimSection = field(default_factory=OptimSection)
    tasks: dict[str, Any] = field(default_factory=dict)
    """task name -> overrides of its definition (``{}`` = the built-in task); the ``tasks`` group composes it"""
    trainer: dict[str, Any] = field(default_factory=dict)
    """Lightning ``Trainer`` arguments (``conf/trainer/``)"""
    logger: dict[str, Any] = field(default_factory=dict)
    """the loggers: one ``_target_`` config per entry (``conf/logger/``: csv, wandb, tensorboard, mlflow, many;
    several with ``logger=[csv,tensorboard]``); ``logger=none`` = no logger"""
    callbacks: dict[str, Any] = field(default_factory=lambda: dict(COMPT_CALLBACK_SETTINGS))
    """compt's own checkpoint settings (``checkpoint_every_n_epochs``: how often ``last.ckpt`` is written for
    resuming; ``keep_last_checkpoint``: false deletes it once the run is complete, e.g. for big sweeps;
    ``restore_best``: test the model of the best validation on the development split, not the last one), plus any
    extra Lightning callbacks as ``_target_`` entries (``+callbacks=early_stopping``, ``conf/callbacks/``)"""
    optimized_metric: str | None = None
    """what ``train.py`` returns to a hyperparameter sweeper (``hparams_search=optuna``: ``val/avg``); None = the
    test ``avg``"""
    claim: ClaimSection = field(default_factory=ClaimSection)
    """→ ClaimSection"""
    jobs_per_gpu: int = 1
    """``hydra/launcher=joblib``: jobs sharing one GPU at once (few-shot jobs leave a big GPU idle;
    docs/scaling.md)"""
    paths: dict[str, Any] = field(default_factory=dict)
    """``root_dir``, ``log_dir`` (``conf/paths/``)"""

    @classmethod
    def from_hydra(cls, cfg: DictConfig | dict[str, Any]) -> TrainSchema:
        """The typed config from a composed Hydra config or a run's recorded one (``RunDir.config()``): keys
        it lacks (an older run) take their defaults; an unknown key or a wrong type is a :class:`ConfigError`."""
        try:
            merged = OmegaConf.merge(OmegaConf.structured(cls), cfg)
            return OmegaConf.to_object(merged)  # type: ignore[return-value]
        except OmegaConfBaseException as err:
            raise ConfigError(f"config: {err}".splitlines()[0] + _where(err)) from None

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as results.json records it under ``"config"``."""
        return asdict(self)


def _where(err: OmegaConfBaseException) -> str:
    key = getattr(err, "full_key", None)
    return f" (key {key})" if key else ""
