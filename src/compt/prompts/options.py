"""The settings of the methods that have their own: the parametric baselines (MPT's rank, ATTEMPT's attention).

Each method's options are one dataclass, named in its traits (:data:`compt.prompts.methods.METHOD_TRAITS`), so a
prompt bank of another method carries none of them: ``PromptBankConfig.options`` holds the options of the bank's
own method (None for a method without any). A field's name is the key a user types under ``method.``
(``method.mpt_rank``: a knob, :func:`compt.fields.knob`) and the name banks saved before the options had a class
of their own recorded at the top of ``prompt_bank.json`` (they still load:
:func:`compt.prompts.config.method_options`). Plain Python: no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from compt.errors import ConfigError
from compt.fields import knob


@dataclass(frozen=True)
class MptOptions:
    """``method=mpt`` (:class:`compt.prompts.baselines.LowRankTaskMatrices`)."""

    mpt_rank: int = knob("method.mpt_rank", 1)
    """rank r of the task matrices W_t = u_t v_tᵀ"""

    def __post_init__(self) -> None:
        if self.mpt_rank < 1:
            raise ConfigError(f"mpt_rank must be >= 1, got {self.mpt_rank}")


@dataclass(frozen=True)
class AttemptOptions:
    """``method=attempt`` (:class:`compt.prompts.baselines.AttemptComposer`)."""

    attempt_hidden: int | None = knob("method.attempt_hidden", None)
    """width of the attention's down projection; None = max(8, d_model // 8)"""
    attempt_temperature: float | None = knob("method.attempt_temperature", None)
    """the attention's softmax temperature; None = d_model"""
