"""The ComPT prompt maths in plain PyTorch (no Lightning, no Hydra)."""

from compt.prompts.bank import PromptBank
from compt.prompts.compose import METHODS, compose
from compt.prompts.config import PromptBankConfig
from compt.prompts.masks import PromptMask, mask_names, parse_mask
from compt.prompts.router import Router, compat_initial_temperature, temperature_at

__all__ = [
    "METHODS",
    "PromptBank",
    "PromptBankConfig",
    "PromptMask",
    "Router",
    "compat_initial_temperature",
    "compose",
    "mask_names",
    "parse_mask",
    "temperature_at",
]
