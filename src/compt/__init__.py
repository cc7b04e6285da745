"""compt: multi-task soft-prompt tuning of frozen language models (T5 family or decoder-only causal LMs) by
modular prompt composition (ComPT).

The prompt maths (:mod:`compt.prompts`) is plain PyTorch; Lightning and Hydra are the outer shell.
"""

from compt.backbone import (
    TINY_CAUSAL_DIR,
    TINY_MODEL_DIR,
    BackboneNotFoundError,
    backbone_family,
    insert_prompts,
    load_backbone,
)
from compt.causal import CausalComptModel
from compt.model import ComptModel, build_model
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
    "TINY_CAUSAL_DIR",
    "TINY_MODEL_DIR",
    "BackboneNotFoundError",
    "CausalComptModel",
    "ComptModel",
    "PromptBank",
    "PromptBankConfig",
    "PromptMask",
    "backbone_family",
    "build_model",
    "compose",
    "insert_prompts",
    "load_backbone",
    "load_bank",
    "mask_names",
    "parse_mask",
    "temperature_at",
]
