"""The schema of ``conf/train.yaml``: every key a user types, its type, its default and its doc.

Hydra composes ``conf/train.yaml`` on top of :data:`TrainSchema` (``compt_schema`` in Hydra's ConfigStore, put
there by :func:`compt.config.hydra.register_config`), so the YAML files hold only group choices and the values that
differ from these defaults (method presets, experiments, protocols, sweeps), and a typo'd key or a value of the
wrong type fails at composition. :class:`compt.config.run_config.RunConfig` turns the composed config into the
library's objects.

A key is one of two kinds:

- a *pass-through knob* sets one library field and is declared on that field, which holds its type, default and
  doc (``batch_size: int = knob("data.batch_size", 20)`` in :class:`~compt.data.config.DataConfig`);
  :func:`build_schema` adds every knob of :data:`compt.config.knobs.LIBRARY` to the sections below;
- the run's own keys (the method preset, the backbone, where prompts start from, the sweep's name, claims, ...),
  written here with their docs. ``trainer``, ``logger``, ``callbacks``, ``paths`` and ``tasks`` are free-form
  (Lightning's ``Trainer`` arguments, the logger, callbacks and paths groups, and task name -> overrides).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from compt.config.knobs import Knob, knobs, with_knobs
from compt.errors import ConfigError
from compt.runs.claims import HEARTBEAT_S, STALE_AFTER_S

#: compt's own callback settings (the ``callbacks`` node also takes extra Lightning callbacks)
COMPT_CALLBACK_SETTINGS = {
    "checkpoint_every_n_epochs": 5,
    "keep_last_checkpoint": True,
    "restore_best": False,
}

#: ``model.dtype`` values (:data:`compt.models.backbone.BACKBONE_DTYPES` maps them to torch dtypes)
WEIGHT_DTYPES = ("fp32", "bf16")


@dataclass
class ClaimSection:
    """``claim.*``: the claim each job puts on its folder (``.compt-claim``, :mod:`compt.runs.claims`), so that a
    second process (a double submission, an early requeue) skips a job a live process trains."""

    heartbeat_s: float = HEARTBEAT_S
    """the holder refreshes its claim this often (seconds)"""
    stale_after_s: float = STALE_AFTER_S
    """a claim not refreshed this long is taken over (its node died); keep it above the clock skew between
    nodes"""


@dataclass
class MethodSection:
    """``method.*``: a method's preset (``conf/method/<name>.yaml``). Its knobs: the prompt lengths
    (``PromptBankConfig.source_length``, ``private_length``) and the baselines' own options
    (:mod:`compt.prompts.options`: ``mpt_rank``, ``attempt_hidden``, ``attempt_temperature``) and the PEFT
    adapters' (:mod:`compt.adapters.options`: ``lora_*``, ``prefix_*``), refused for the methods that do not read
    them."""

    name: str = MISSING
    """the method: a composition method of :data:`compt.prompts.METHODS` (the PEFT adapters ``lora`` and
    ``prefix`` among them), or a run made of several (``spot``, ``pt_single``; :mod:`compt.recipes`); set by the
    preset"""
    epochs: int = 50
    """training epochs of the method (``optim.epochs`` overrides; doubled when k ≤ ``optim.double_epochs_max_k``)"""
    n_sources: int | None = None
    """the method's own S, replacing the top-level ``n_sources`` (mpt: 1); None = ``n_sources``"""
    encoder: str | None = None
    """the method's own prompt encoder, replacing ``prompt.encoder`` (mpt, attempt: none); None = ``prompt.encoder``"""
    stage1_epochs: int | None = None
    """spot only: epochs of stage 1 (the shared prompt); ``epochs`` are stage 2's"""
    source_tasks: list[str] | None = None
    """spot only: the tasks of stage 1, e.g. [mnli, qnli, qqp, sst2]; None = the run's tasks"""
    bank_method: str | None = None
    """the composition method of the bank this run trains when it is not ``name``; set by the runs a method is
    made of (spot's stages, pt_single's per-task runs), never by hand"""


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
    """``prompt.*``: the prompts' placement, encoders and initialisation (knobs: ``PromptBankConfig``)."""

    private_init_from: str | None = None
    """a run (or bank) folder: every private prompt starts as its first source prompt (SPoT's stage 2)"""


@dataclass
class SourcesSection:
    """``sources.*``: source prompts taken from an earlier run (``sources.freeze``: a knob of
    ``PromptBankConfig``)."""

    init_from: str | None = None
    """a run (or bank) folder whose source prompts start this run's (any method with sources)"""


@dataclass
class RouterSection:
    """``router.*``: the router's weights (knobs: ``PromptBankConfig.router_*``) and its temperature schedule
    (knobs: ``RouterSchedule``)."""


@dataclass
class KshotSection:
    """``kshot.*``: how the k training examples per task are drawn (knobs: ``DataConfig.kshot_*``)."""


@dataclass
class DataSection:
    """``data.*``: where the task data comes from, how it is batched and tokenised (knobs: ``DataConfig``), and
    how its rows are written as text for every task of the run (knobs: ``TaskSpec``)."""


@dataclass
class EvalSection:
    """``eval.*``: the evaluation examples (knobs: ``DataConfig.eval_*``), how they are predicted (knobs:
    ``EvalConfig``) and how answers are read (knobs: ``TaskSpec``)."""


@dataclass
class MetricsSection:
    """``metrics.*``: which reading of the metrics is primary (knobs: ``EvalConfig.metrics_*``)."""


@dataclass
class LearningRates:
    """``optim.lr.*``: one learning rate per parameter group (knobs: ``OptimConfig.lr_*``)."""


@dataclass
class OptimSection:
    """``optim.*``: AdamW and its schedule (knobs: ``OptimConfig``), and the number of epochs
    (``conf/optim/<name>.yaml``)."""

    lr: LearningRates = field(default_factory=LearningRates)
    """the three groups' learning rates"""
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
class RunKeys:
    """The run's own keys and the sections; :data:`TrainSchema` is this with every knob added (``seed``,
    ``k`` and ``n_sources`` at the top: knobs of ``DataConfig`` and ``PromptBankConfig``)."""

    name: str = "default"
    """sweep name: ``-m`` jobs go to ``multirun/<name>/<overrides>``"""
    force: bool = False
    """re-run a complete or diverged job from scratch (marked once: a requeue of that re-run resumes it)"""
    deterministic: bool = False
    """torch deterministic algorithms (bit-reproducible resumes on CPU)"""
    portable_cpu: bool = False
    """CPU arithmetic that gives the same numbers on any x86-64 machine: one thread, unvectorised torch kernels,
    MKL's compatible path, no oneDNN (:mod:`compt.runtime.numerics`; slower; the demos set it)"""
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
    """the claim on the job's folder"""
    jobs_per_gpu: int = 1
    """``hydra/launcher=joblib``: jobs sharing one GPU at once (few-shot jobs leave a big GPU idle;
    docs/scaling.md)"""
    paths: dict[str, Any] = field(default_factory=dict)
    """``root_dir``, ``log_dir`` (``conf/paths/``)"""

    @classmethod
    def from_hydra(cls, cfg: DictConfig | dict[str, Any]) -> Any:
        """The typed config from a composed Hydra config or a run's recorded one (``RunDir.config()``): keys
        it lacks (an older run) take their defaults; an unknown key or a wrong type is a :class:`ConfigError`.
        (Called on :data:`TrainSchema`.)"""
        try:
            merged = OmegaConf.merge(OmegaConf.structured(cls), cfg)
            return OmegaConf.to_object(merged)
        except OmegaConfBaseException as err:
            raise ConfigError(f"config: {err}".splitlines()[0] + _where(err)) from None

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as results.json records it under ``"config"``."""
        return asdict(self)


def _where(err: OmegaConfBaseException) -> str:
    key = getattr(err, "full_key", None)
    return f" (key {key})" if key else ""


def build_schema(every: list[Knob] | None = None) -> type[RunKeys]:
    """The whole schema: :class:`RunKeys` with a field for every knob (default: those of
    :data:`compt.config.knobs.LIBRARY`; :func:`compt.config.knobs.with_knobs`). Its sections are attributes of
    it (``TrainSchema.DataSection``), so that a config pickles by name (``ddp_spawn`` hands it to its ranks)."""
    built: dict[str, type] = {}
    schema = with_knobs(RunKeys, knobs() if every is None else every, "", built)
    schema.__name__ = schema.__qualname__ = "TrainSchema"
    for name, section in built.items():
        if section is not schema:
            section.__qualname__ = f"TrainSchema.{name}"
            setattr(schema, name, section)
    return schema


#: the schema of every run: the type of a typed config (``TrainSchema.from_hydra(cfg)``)
TrainSchema = build_schema()
