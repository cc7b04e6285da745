"""The prompt bank's configuration: one field per knob of docs/method.md §1-3, validated where it is set."""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from compt.adapters.options import adapter_options, options_dict
from compt.errors import ConfigError
from compt.fields import unknown_keys
from compt.prompts.encoder import ENCODER_KINDS
from compt.prompts.methods import METHOD_TRAITS, METHODS, MethodTraits
from compt.prompts.router import SAMPLES, TRAIN_NORMS
from compt.tokenization import FAMILIES

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
    n_sources: int = 3
    """S, the number of shared source prompts"""
    source_length: int = 20
    """L_s, rows per source prompt (the paper: 20 for ssum/msum, 10 for mcat)"""
    private_length: int | None = None
    """L_u, rows per private prompt; None derives it: L_s for ssum/msum/pt, S·L_s for mcat"""
    encoder: str = "mlp"
    """prompt encoder: mlp (Linear→GELU→Linear, the paper) | none (raw prompt)"""
    encoder_hidden: int | None = None
    """the encoder's hidden size; None = d_model"""
    encoder_residual: bool = False
    """add the raw prompt to the encoder's output (not in the paper)"""
    encoder_dropout: float = 0.0
    """dropout inside the encoder (not in the paper)"""
    source_init_range: float = 0.5
    """source rows start uniform(-r, r)"""
    private_init: str = "vocab_random"
    """vocab_random (random rows of the input embedding) | vocab_first_rows (the authors' code) | uniform"""
    router_learn: bool = True
    """false = constant weights 1/S (paper Fig. 5)"""
    router_train_norm: str = "softmax"
    """normalisation of the Relaxed-Bernoulli sample: softmax (paper) | sum_compat (code: softmax(z/Σz + 1e-8))"""
    router_sample: str = "per_example"
    """training draws: one Relaxed-Bernoulli sample per example (the authors' code) | per_task (one per task and
    step, shared by that task's examples)"""
    position: str = "after"
    """where the prompt goes in the encoder input: after the text (before </s>) or before it"""
    backbone: str | None = None
    """the backbone the bank was trained with (name or path), recorded for loading"""
    backbone_family: str | None = None
    """the backbone's family, seq2seq | causal (set when the bank meets its backbone; None = not recorded,
    read as seq2seq: banks saved before causal LMs were supported)"""
    freeze_sources: bool = False
    """keep the source prompts and their encoders fixed (e.g. loaded from an earlier run)"""
    mpt_rank: int = 1
    """method=mpt only: rank r of the task matrices W_t = u_t v_tᵀ"""
    attempt_hidden: int | None = None
    """method=attempt only: width of the attention's down projection; None = max(8, d_model // 8)"""
    attempt_temperature: float | None = None
    """method=attempt only: the attention's softmax temperature; None = d_model"""
    adapter: Any = None
    """an adapter method's settings (``lora``: :class:`~compt.adapters.options.LoraOptions`, ``prefix``:
    :class:`~compt.adapters.options.PrefixOptions`; a mapping is read into that class, None = its defaults);
    None for the prompt methods"""

    def __post_init__(self) -> None:
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
        self._check_method_options()
        self.adapter = adapter_options(self.method, self.adapter)
        if not 0.0 <= self.encoder_dropout < 1.0:
            raise ConfigError(f"encoder_dropout must be in [0, 1), got {self.encoder_dropout}")

    def _check_method_options(self) -> None:
        """Options of one method given to another fail, naming the method they belong to."""
        defaults = {f.name: f.default for f in fields(self) if f.default is not MISSING}
        for other in METHOD_TRAITS.values():
            given = [name for name in other.options if getattr(self, name) != defaults[name]]
            if other.name != self.method and given:
                verb = "applies" if len(other.options) == 1 else "apply"
                raise ConfigError(
                    f"{' / '.join(other.options)} {verb} to method={other.name} only (method={self.method!r})"
                )
        fixed = self.traits.fixed_n_sources
        if fixed is not None and self.n_sources != fixed:
            raise ConfigError(
                f"method={self.method} has exactly {fixed} shared prompt{'s' if fixed > 1 else ''}: "
                f"n_sources must be {fixed}, got {self.n_sources}"
            )
        if self.mpt_rank < 1:
            raise ConfigError(f"mpt_rank must be >= 1, got {self.mpt_rank}")
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
        """Build from a dict, rejecting unknown keys by name."""
        unknown, known = unknown_keys(cls, values)
        if unknown:
            raise ConfigError(f"unknown prompt bank option(s) {unknown}; known: {known}")
        return cls(**values)


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(allowed)}")
