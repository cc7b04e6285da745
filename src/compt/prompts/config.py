"""The prompt bank's configuration: one field per knob of docs/method.md §1-3, validated where it is set."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import InitVar, asdict, dataclass, field, fields, is_dataclass
from typing import Any

from compt.adapters.options import adapter_options, options_dict
from compt.errors import ConfigError
from compt.fields import knob, unknown_keys
from compt.models.tokenization import FAMILIES
from compt.prompts.encoder import ENCODER_KINDS
from compt.prompts.methods import METHOD_TRAITS, METHODS, MethodTraits
from compt.prompts.options import AttemptOptions, MptOptions
from compt.prompts.router import SAMPLES, TRAIN_NORMS

PRIVATE_INITS = ("vocab_random", "vocab_first_rows", "uniform")
POSITIONS = ("after", "before")


@dataclass
class PromptBankConfig:
    """Everything needed to rebuild a prompt bank (saved next to its weights as JSON)."""

    method: str = "ssum"
    """composition: pt | ssum | msum | mcat | sources_only (docs/method.md §2) | mpt | attempt (baselines)"""
    task_names: list[str] = field(default_factory=list)
    """the T tasks, in task-id order"""
    d_model: int = 768
    """the backbone's hidden size d"""
    n_sources: int = knob("n_sources", 3)
    """S, the number of shared source prompts"""
    source_length: int = knob("method.source_length", 20)
    """L_s, rows per source prompt (the paper: 20 for ssum/msum, 10 for mcat)"""
    private_length: int | None = knob("method.private_length", None)
    """L_u, rows per private prompt; None derives it: L_s for ssum/msum/pt, S·L_s for mcat"""
    encoder: str = knob("prompt.encoder", "mlp")
    """prompt encoder: mlp (Linear→GELU→Linear, the paper) | none (raw prompt)"""
    encoder_hidden: int | None = knob("prompt.encoder_hidden", None)
    """the encoder's hidden size; None = d_model"""
    encoder_residual: bool = knob("prompt.encoder_residual", False)
    """add the raw prompt to the encoder's output (not in the paper)"""
    encoder_dropout: float = knob("prompt.encoder_dropout", 0.0)
    """dropout inside the encoder (not in the paper)"""
    source_init_range: float = knob("prompt.source_init_range", 0.5)
    """source rows start uniform(-r, r)"""
    private_init: str = knob("prompt.private_init", "vocab_random")
    """vocab_random (random rows of the input embedding) | vocab_first_rows (the authors' code) | uniform"""
    router_learn: bool = knob("router.learn", True)
    """false = constant weights 1/S (paper Fig. 5)"""
    router_train_norm: str = knob("router.train_norm", "softmax")
    """normalisation of the Relaxed-Bernoulli sample: softmax (paper) | sum_compat (code: softmax(z/Σz + 1e-8))"""
    router_sample: str = knob("router.sample", "per_example")
    """training draws: one Relaxed-Bernoulli sample per example (the authors' code) | per_task (one per task and
    step, shared by that task's examples)"""
    position: str = knob("prompt.position", "after")
    """where the prompt goes in the encoder input: after the text (before </s>) or before it"""
    backbone: str | None = None
    """the backbone the bank was trained with (name or path), recorded for loading"""
    backbone_family: str | None = None
    """the backbone's family, seq2seq | causal (set when the bank meets its backbone; None = not recorded,
    read as seq2seq: banks saved before causal LMs were supported)"""
    freeze_sources: bool = knob("sources.freeze", False)
    """keep the source prompts and their encoders fixed (e.g. loaded from an earlier run)"""
    options: Any = None
    """the settings of the bank's method when it has its own (its traits' ``options`` class:
    :class:`~compt.prompts.options.MptOptions` for mpt, :class:`~compt.prompts.options.AttemptOptions` for
    attempt), or None; a mapping is read into that class (:func:`method_options`); None for a method with options
    = their defaults"""
    adapter: Any = None
    """a PEFT adapter method's settings (``lora``: :class:`~compt.adapters.options.LoraOptions`, ``prefix``:
    :class:`~compt.adapters.options.PrefixOptions`; a mapping is read into that class, None = its defaults);
    None for the prompt methods"""
    mpt_rank: InitVar[int] = MptOptions.mpt_rank
    attempt_hidden: InitVar[int | None] = AttemptOptions.attempt_hidden
    attempt_temperature: InitVar[float | None] = AttemptOptions.attempt_temperature
    """(init only) the baselines' options under their own names, as banks saved before they had a class of their
    own recorded them, and as keywords: folded into ``options``"""

    def __post_init__(
        self, mpt_rank: int, attempt_hidden: int | None, attempt_temperature: float | None
    ) -> None:
        _choice("method", self.method, METHODS)
        _choice("encoder", self.encoder, ENCODER_KINDS)
        _choice("private_init", self.private_init, PRIVATE_INITS)
        _choice("router_train_norm", self.router_train_norm, TRAIN_NORMS)
        _choice("router_sample", self.router_sample, SAMPLES)
        _choice("position", self.position, POSITIONS)
        if self.backbone_family is not None:
            _choice("backbone_family", self.backbone_family, FAMILIES)
        self.task_names = list(self.task_names)
        if not self.task_names:
            raise ConfigError("task_names must name at least one task")
        if len(set(self.task_names)) != len(self.task_names):
            raise ConfigError(f"task_names has duplicates: {self.task_names}")
        for name in ("d_model", "source_length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.uses_sources and self.n_sources < 1:
            raise ConfigError(f"method {self.method!r} needs n_sources >= 1, got {self.n_sources}")
        expected = self.derived_private_length()
        if self.private_length is None:
            self.private_length = expected
        elif self.traits.derives_private_length and self.private_length != expected:
            raise ConfigError(
                f"method {self.method!r} needs private_length == {expected} "
                f"(from n_sources={self.n_sources}, source_length={self.source_length}), "
                f"got {self.private_length}; leave private_length unset to derive it"
            )
        given = dict(asdict(self.options) if is_dataclass(self.options) else self.options or {})
        flat = {
            "mpt_rank": mpt_rank,
            "attempt_hidden": attempt_hidden,
            "attempt_temperature": attempt_temperature,
        }
        self.options = method_options(self.method, {**flat, **given})
        self._check_method_shape()
        self.adapter = adapter_options(self.method, self.adapter)
        if not 0.0 <= self.encoder_dropout < 1.0:
            raise ConfigError(f"encoder_dropout must be in [0, 1), got {self.encoder_dropout}")

    def _check_method_shape(self) -> None:
        """The number of sources a method fixes, and sources to freeze."""
        fixed = self.traits.fixed_n_sources
        if fixed is not None and self.n_sources != fixed:
            raise ConfigError(
                f"method={self.method} has exactly {fixed} shared prompt{'s' if fixed > 1 else ''}: "
                f"n_sources must be {fixed}, got {self.n_sources}"
            )
        if self.freeze_sources and not self.uses_sources:
            raise ConfigError(f"sources.freeze=true: method {self.method!r} has no source prompts to freeze")

    @property
    def traits(self) -> MethodTraits:
        """The method's entry in the table of method traits."""
        return METHOD_TRAITS[self.method]

    @property
    def uses_router(self) -> bool:
        """Whether source weights come from ComPT's per-task router."""
        return self.traits.router

    def derived_private_length(self) -> int:
        """L_u implied by the method: S·L_s when the target prompt concatenates the sources (mcat), else L_s."""
        return self.n_sources * self.source_length if self.traits.concatenates else self.source_length

    @property
    def n_tasks(self) -> int:
        return len(self.task_names)

    @property
    def uses_private(self) -> bool:
        return self.traits.private

    @property
    def uses_sources(self) -> bool:
        return self.traits.sources

    @property
    def prompt_length(self) -> int:
        """L_t, rows of the composed target prompt (none for an adapter method)."""
        if self.traits.adapter is not None:
            return 0
        if self.traits.length == "private":
            return int(self.private_length)
        return self.derived_private_length()

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "adapter": options_dict(self.adapter)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PromptBankConfig:
        """Build from a dict (a saved bank's, a checkpoint's: old ones with the options at the top level too),
        rejecting unknown keys by name."""
        unknown, known = unknown_keys(cls, values)
        unknown = [key for key in unknown if key not in inspect.signature(cls).parameters]
        if unknown:
            raise ConfigError(f"unknown prompt bank option(s) {unknown}; known: {known}")
        return cls(**values)


def method_options(method: str, given: Mapping[str, Any]) -> Any:
    """The options of ``method`` (an instance of its traits' ``options`` class; None for a method without) from
    ``given``: option name -> value, of any method's options (a setting at its default counts as not given).

    Raises:
        ConfigError: an unknown option, or one of another method's options given, naming the method it applies
            to (``mpt_rank applies to method=mpt only``).
    """
    classes = [t for t in METHOD_TRAITS.values() if t.options is not None]
    known = {f.name for t in classes for f in fields(t.options)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise ConfigError(f"unknown method option(s) {unknown}; known: {sorted(known)}")
    for other in classes:
        defaults = asdict(other.options())
        if other.name != method and any(given.get(name, value) != value for name, value in defaults.items()):
            verb = "applies" if len(defaults) == 1 else "apply"
            raise ConfigError(
                f"{' / '.join(defaults)} {verb} to method={other.name} only (method={method!r})"
            )
    own = METHOD_TRAITS[method].options
    if own is None:
        return None
    return own(**{f.name: given[f.name] for f in fields(own) if f.name in given})


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(allowed)}")
