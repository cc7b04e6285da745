"""Every composition method's traits, in one table: what it has, how long its prompt is, how masks act on it
(and the two PEFT adapter methods, which train no prompt: :mod:`compt.adapters`).

:func:`compose`, :class:`PromptBankConfig`, :class:`PromptBank`, the masks and the report read these traits
instead of comparing method names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from compt.errors import ConfigError
from compt.prompts.options import AttemptOptions, MptOptions

LengthRule = Literal["private", "source", "concat"]
Operation = Literal["add", "multiply"]


@dataclass(frozen=True)
class MethodTraits:
    """One composition method (docs/method.md §2; the baselines in :mod:`compt.prompts.baselines`)."""

    name: str
    """the method's name (``method`` of :class:`PromptBankConfig`)"""
    private: bool
    """a private prompt per task (for ``mpt`` its task matrix)"""
    sources: bool
    """shared source prompts"""
    router: bool
    """source weights from ComPT's per-task router"""
    length: LengthRule
    """L_t of the target prompt: ``private`` (L_u), ``source`` (L_s) or ``concat`` (S·L_s, one segment per source)"""
    operation: Operation | None = None
    """how the private prompt meets the sources; a removed private prompt becomes this operation's identity"""
    per_example: bool = False
    """weights from each example's input (ATTEMPT's attention): prompts are composed per example, never per task"""
    maskable: bool = False
    """the source-masking analysis applies (masks other than ``total``)"""
    task_matrices: bool = False
    """the private part is a low-rank task matrix times one shared prompt (``mpt``), not a prompt table"""
    fixed_n_sources: int | None = None
    """the number of shared prompts the method requires, if it fixes one"""
    options: type | None = None
    """the dataclass of the settings only this method reads (:mod:`compt.prompts.options`), held by its banks'
    ``PromptBankConfig.options``; None: it has none"""
    adapter: str | None = None
    """the PEFT adapter the method trains instead of prompts (``lora`` | ``prefix``; its settings:
    :data:`compt.adapters.options.ADAPTER_OPTIONS`, held by its banks' ``PromptBankConfig.adapter``): the
    target prompt has no rows, nothing is masked"""

    @property
    def concatenates(self) -> bool:
        """The target prompt is the sources' segments side by side (``mcat``): a removed source's rows are
        zeroed and left out of the attention mask instead of renormalising the others."""
        return self.length == "concat"

    @property
    def derives_private_length(self) -> bool:
        """L_u follows from the sources (S·L_s or L_s) rather than being free (``pt``) or absent."""
        return self.private and self.length != "private"

    @property
    def masked_private(self) -> float:
        """The value a removed private prompt takes: 0 where it is added, 1 where it multiplies."""
        return 0.0 if self.operation == "add" else 1.0

    @property
    def single_source_keeps_private(self) -> bool:
        """Whether the ``src{i}`` masks keep the private prompt: a product needs it; a sum isolates the source
        without it."""
        return self.operation == "multiply"


# fmt: off
METHOD_TRAITS: dict[str, MethodTraits] = {t.name: t for t in (
    #            name            private sources router  length     operation
    MethodTraits("pt",           True,   False,  False,  "private", None),
    MethodTraits("ssum",         True,   True,   True,   "source",  "add",      maskable=True),
    MethodTraits("msum",         True,   True,   True,   "source",  "multiply", maskable=True),
    MethodTraits("mcat",         True,   True,   True,   "concat",  "multiply", maskable=True),
    MethodTraits("sources_only", False,  True,   True,   "source",  None,       maskable=True),
    MethodTraits("mpt",          True,   True,   False,  "source",  "multiply", task_matrices=True,
                 fixed_n_sources=1, options=MptOptions),
    MethodTraits("attempt",      True,   True,   False,  "source",  "add",      per_example=True, maskable=True,
                 options=AttemptOptions),
    MethodTraits("lora",         False,  False,  False,  "private", None,       adapter="lora"),
    MethodTraits("prefix",       False,  False,  False,  "private", None,       adapter="prefix"),
)}
# fmt: on
"""method name -> its traits, in compt's order (tables and reports list methods in this order)"""

METHODS: tuple[str, ...] = tuple(METHOD_TRAITS)


def method_traits(method: str) -> MethodTraits:
    """The traits of ``method``; :class:`ConfigError` (a ``ValueError``) naming the methods otherwise."""
    try:
        return METHOD_TRAITS[method]
    except KeyError:
        raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}") from None


def has_source_prompts(method: str) -> bool:
    """Whether runs of ``method`` have source prompts (False for a name outside the table, e.g. a run-level
    method such as ``pt_single`` or ``spot``, whose final bank is ``pt``)."""
    return method in METHOD_TRAITS and METHOD_TRAITS[method].sources
