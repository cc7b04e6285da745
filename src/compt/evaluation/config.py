"""``EvalConfig``: how a run is evaluated (prediction mode, masks, metric reading, cross-task prompts). Imports no
torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from compt.errors import ConfigError
from compt.fields import knob

EVAL_MODES = ("generate", "rank")


@dataclass(frozen=True)
class EvalConfig:
    """Prediction and metrics settings of an evaluation (the data it reads: :class:`compt.data.DataConfig`)."""

    mode: str = knob("eval.mode", "generate")
    """generate (greedy decoding, the paper) | rank (score every label word; never invalid)"""
    max_new_tokens: int = knob("eval.max_new_tokens", 8)
    """tokens generated per answer with ``mode=generate``"""
    masks: tuple[str, ...] = knob("eval.masks", ("total",))
    """masks evaluated at test time, the first is the main one: total, private, all_src, src0, src1, ...;
    ``src*`` = every single-source mask ``src0 .. src{S-1}`` (so one list serves sweeps over S)"""
    metrics_compat: bool = knob("metrics.compat", False)
    """make the paper's reading (accuracy; stsb spearman) the primary metrics; both readings are computed either
    way (docs/method.md §6)"""
    repetition_penalty: float = knob("eval.repetition_penalty", 1.0)
    """``mode=generate`` only: transformers' repetition penalty — the next-token logit of every token already in
    the sequence (the decoder's tokens for T5; the text and the answer so far for a causal LM) is divided by it
    when positive, multiplied when negative; 1.0 = none (the authors' evaluation used 2.0)"""
    cross_prompts: str | None = knob("eval.cross_prompts", None)
    """at test time, also score every task with every task's prompt (paper Fig. A1), under the main mask:
    ``rank`` (each evaluated task's own label words are scored, whichever prompt is used) | ``generate`` (an
    answer outside the evaluated task's labels counts as wrong) | None (off)"""

    def __post_init__(self) -> None:
        if self.mode not in EVAL_MODES:
            raise ConfigError(f"eval.mode={self.mode!r}; choose one of {', '.join(EVAL_MODES)}")
        if self.cross_prompts is not None and self.cross_prompts not in EVAL_MODES:
            raise ConfigError(
                f"eval.cross_prompts={self.cross_prompts!r}; choose one of {', '.join(EVAL_MODES)} or null (off)"
            )
        if self.max_new_tokens < 1:
            raise ConfigError(f"eval.max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not self.repetition_penalty > 0:
            raise ConfigError(
                f"eval.repetition_penalty must be > 0 (1.0 = none), got {self.repetition_penalty}"
            )
        object.__setattr__(self, "masks", tuple(self.masks))

    def expanded_masks(self, n_sources: int) -> list[str]:
        """The masks with ``src*`` replaced by ``src0 .. src{n_sources-1}`` (``["total"]`` if none)."""
        out: list[str] = []
        for name in self.masks or ("total",):
            out += [f"src{i}" for i in range(n_sources)] if name == "src*" else [name]
        return list(dict.fromkeys(out))

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, not tuples), e.g. for a checkpoint's hyperparameters."""
        return {**asdict(self), "masks": list(self.masks)}
