"""Start a bank from an earlier run: ``sources.init_from`` (any method with sources) and SPoT's stage 2."""

from __future__ import annotations

from pathlib import Path

from compt.prompts.bank import PromptBank
from compt.runs import load_bank


def initialise_bank(
    bank: PromptBank, sources_from: str | Path | None, private_from: str | Path | None
) -> None:
    """Copy sources from ``sources_from`` and/or start private prompts from ``private_from``'s first source.

    Each is a run folder (its ``bank/``) or a bank folder.
    """
    if sources_from:
        bank.init_sources_from(load_bank(sources_from, d_model=bank.config.d_model))
    if private_from:
        bank.init_private_from_source(load_bank(private_from, d_model=bank.config.d_model))
