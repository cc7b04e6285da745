"""compt: multi-task soft-prompt tuning of frozen language models (T5 family or decoder-only causal LMs) by
modular prompt composition (ComPT).

The prompt maths (:mod:`compt.prompts`) is plain PyTorch; Lightning and Hydra are the outer shell. The names
below are imported on first use, so ``import compt`` (and ``compt --help``) does not import torch.
"""

from compt._lazy import lazy_exports

__version__ = "0.1.0"

#: module -> the public names it defines (imported on first use)
__getattr__, __dir__, __all__ = lazy_exports(
    globals(),
    {
        "compt.errors": ["ComptError", "BackboneNotFoundError"],
        "compt.models.backbone": [
            "TINY_CAUSAL_DIR",
            "TINY_MODEL_DIR",
            "backbone_family",
            "insert_prompts",
            "load_backbone",
        ],
        "compt.models.causal": ["CausalComptModel"],
        "compt.models.seq2seq": ["ComptModel"],
        "compt.models.family": ["build_model"],
        "compt.prompts.compose": ["compose"],
        "compt.prompts.methods": ["METHODS", "method_traits"],
        "compt.prompts.bank": ["PromptBank"],
        "compt.prompts.config": ["PromptBankConfig"],
        "compt.prompts.masks": ["PromptMask", "mask_names", "parse_mask"],
        "compt.prompts.router": ["RouterSchedule"],
        "compt.runs": ["load_bank"],
    },
)
