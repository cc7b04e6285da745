"""compt: multi-task soft-prompt tuning of frozen language models by modular prompt composition (ComPT).

The prompt maths (:mod:`compt.prompts`) is plain PyTorch; Lightning and Hydra are the outer shell.
"""

from compt.backbone import TINY_MODEL_DIR, BackboneNotFoundError, insert_prompts, load_backbone
from compt.model import ComptModel
from compt.prompts import (
    METHODS,
    PromptBank,
    PromptBankConfig,
    PromptMask,
    compose,
    load_bank,
    mask_names,
    parse_mask,
    temperature_at,
)

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "TINY_MODEL_DIR",
    "BackboneNotFoundError",
    "ComptModel",
    "PromptBank",
    "PromptBankConfig",
    "PromptMask",
    "compose",
    "insert_prompts",
    "load_backbone",
    "load_bank",
    "mask_names",
    "parse_mask",
    "temperature_at",
]
