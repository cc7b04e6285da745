"""The settings of the PEFT adapter methods (``method=lora``, ``method=prefix``): one dataclass each, the key a
user types under ``method.`` declared on its field (a knob, :func:`compt.fields.knob`).

Defaults and where they come from (neither the LoRA nor the P-Tuning v2 paper has a GLUE setting for T5-base;
the nearest published ones are named; every figure was read in the authors' own scripts):

* LoRA: the T5-base GLUE LoRA baseline of Sung et al. 2022 ("LST: Ladder Side-Tuning", NeurIPS; its code
  ``ylsung/Ladder-Side-Tuning``, ``seq2seq/scripts/lora.sh``: ``lora_dim=32``; ``seq2seq/lora/config.py``:
  ``lora_alpha = 32``, ``lora_dropout = 0.1``; LoRA on the query and value projections of every attention
  block, ``seq2seq/third_party/models/t5/modeling_t5.py``). The LoRA paper (Hu et al. 2022) adapts the same two
  projections on GLUE with RoBERTa-base at r = 8, alpha = 16 (``microsoft/LoRA``,
  ``examples/NLU/roberta_base_*.sh``): ``method.lora_r=8 method.lora_alpha=16`` gives that.
* Prefix tuning: P-Tuning v2 (Liu et al. 2022, ACL; its code ``THUDM/P-tuning-v2``): no reparameterisation by
  default (``arguments.py``: ``prefix_projection=False``, ``prefix_hidden_size=512``); its SuperGLUE scripts
  pick the prefix length per task between 8 and 128 (``run_script/run_*.sh``, ``psl``); 20 is its BERT-large
  RTE, WiC and WSC setting and the length of compt's own prompts.

Plain Python: no torch, no PEFT (:mod:`compt.adapters.peft_setup` builds PEFT's configs from these).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, is_dataclass
from typing import Any

from compt.errors import ConfigError
from compt.fields import knob


@dataclass(frozen=True)
class LoraOptions:
    """``method=lora``: PEFT's ``LoraConfig`` on the frozen backbone, one adapter shared by every task."""

    lora_r: int = knob("method.lora_r", 32)
    """rank r of the update ``B A`` of every adapted weight (LST's T5-base GLUE LoRA)"""
    lora_alpha: float = knob("method.lora_alpha", 32.0)
    """the update is scaled by alpha / r (LST's T5-base GLUE LoRA: 32)"""
    lora_dropout: float = knob("method.lora_dropout", 0.1)
    """dropout on the adapted layers' input, in the LoRA branch only (LST's T5-base GLUE LoRA)"""
    lora_target_modules: tuple[str, ...] | None = knob("method.lora_target_modules", None)
    """the adapted linear layers by name; None = PEFT's default for the architecture: the query and value
    projections (``q``, ``v`` in T5; ``q_proj``, ``v_proj`` in Llama-style models), as the LoRA paper on GLUE"""

    def __post_init__(self) -> None:
        if self.lora_r < 1:
            raise ConfigError(f"method.lora_r must be >= 1, got {self.lora_r}")
        if not self.lora_alpha > 0:
            raise ConfigError(f"method.lora_alpha must be > 0, got {self.lora_alpha}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"method.lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.lora_target_modules is not None:
            object.__setattr__(self, "lora_target_modules", tuple(self.lora_target_modules))
            if not self.lora_target_modules:
                raise ConfigError(
                    "method.lora_target_modules=[] adapts nothing; name layers (e.g. [q,v]) or leave it null "
                    "(PEFT's default for the architecture)"
                )


@dataclass(frozen=True)
class PrefixOptions:
    """``method=prefix``: PEFT's ``PrefixTuningConfig`` (P-Tuning v2's deep prompts: trained key/value prefixes at
    every layer PEFT gives one; for an encoder-decoder, PEFT's prefixes go into the decoder's self-attention)."""

    prefix_length: int = knob("method.prefix_length", 20)
    """prefix rows per layer (PEFT's ``num_virtual_tokens``; P-Tuning v2's ``pre_seq_len``)"""
    prefix_projection: bool = knob("method.prefix_projection", False)
    """reparameterise the prefix through a two-layer MLP in training (Li & Liang's prefix-tuning); P-Tuning v2
    trains the prefix directly (false). PEFT saves the projected prefix, without the MLP"""
    prefix_hidden: int = knob("method.prefix_hidden", 512)
    """``prefix_projection=true`` only: the MLP's hidden size (P-Tuning v2's ``prefix_hidden_size``)"""

    def __post_init__(self) -> None:
        for name in ("prefix_length", "prefix_hidden"):
            if getattr(self, name) < 1:
                raise ConfigError(f"method.{name} must be >= 1, got {getattr(self, name)}")


#: adapter method -> its settings (the methods whose traits name an adapter, :data:`compt.prompts.METHOD_TRAITS`)
ADAPTER_OPTIONS: dict[str, type] = {"lora": LoraOptions, "prefix": PrefixOptions}


def adapter_options(method: str, given: Any) -> LoraOptions | PrefixOptions | None:
    """The adapter settings of ``method`` (None for a method without an adapter) from ``given``: its settings
    object, a mapping of option name -> value (of any adapter method's options: a value at its default counts
    as not given), or None (every default).

    Raises:
        ConfigError: an unknown option, or another adapter method's option given a value, naming the method
            it applies to (``method.lora_r applies to method=lora only``).
    """
    values = asdict(given) if is_dataclass(given) else dict(given or {})
    known = {f.name for cls in ADAPTER_OPTIONS.values() for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown adapter option(s) {unknown}; known: {sorted(known)}")
    for name, cls in ADAPTER_OPTIONS.items():
        defaults = asdict(cls())
        given_here = [
            key for key, value in defaults.items() if key in values and _differs(values[key], value)
        ]
        if name != method and given_here:
            verb = "applies" if len(given_here) == 1 else "apply"
            raise ConfigError(
                f"{' / '.join(f'method.{key}' for key in given_here)} {verb} to method={name} only "
                f"(method={method!r})"
            )
    own = ADAPTER_OPTIONS.get(method)
    if own is None:
        return None
    return own(**{f.name: values[f.name] for f in fields(own) if f.name in values})


def _differs(value: Any, default: Any) -> bool:
    """A value other than the default (a list given for a tuple default compares by its items)."""
    if isinstance(value, list | tuple) and isinstance(default, list | tuple):
        return tuple(value) != tuple(default)
    return value != default


def options_dict(options: Any) -> Mapping[str, Any] | None:
    """Plain data of an adapter's settings (lists, not tuples), e.g. for a saved bank's JSON; None stays None."""
    if options is None:
        return None
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(options).items()}
