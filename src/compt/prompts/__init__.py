"""The ComPT prompt maths in plain PyTorch (no Lightning, no Hydra)."""

from compt.prompts.bank import PromptBank
from compt.prompts.compose import compose
from compt.prompts.config import PromptBankConfig
from compt.prompts.masks import PromptMask, mask_names, masks_for, parse_mask
from compt.prompts.methods import METHOD_TRAITS, METHODS, MethodTraits, method_traits
from compt.prompts.router import Router, RouterSchedule, compat_initial_temperature

__all__ = [
    "METHODS",
    "METHOD_TRAITS",
    "MethodTraits",
    "PromptBank",
    "PromptBankConfig",
    "PromptMask",
    "Router",
    "RouterSchedule",
    "compat_initial_temperature",
    "compose",
    "mask_names",
    "masks_for",
    "method_traits",
    "parse_mask",
]
