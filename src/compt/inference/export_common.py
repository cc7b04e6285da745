"""What a PEFT export of either kind shares (a task's composed prompt, :mod:`compt.inference.export`; a LoRA or
prefix run's adapter, :mod:`compt.inference.export_adapter`): compt's record of the export, PEFT's task type per
backbone family, the family a bank was trained on, the README's loading snippet."""

from __future__ import annotations

from pathlib import Path

from compt.models.backbone import backbone_family, resolve_model_name
from compt.prompts.bank import PromptBank

#: compt's record of an export (task, mask, source bank...), beside PEFT's files
EXPORT_RECORD = "compt_export.json"
#: backbone family -> (PEFT task type, the transformers class that loads the backbone)
PEFT_TASK_TYPES = {
    "seq2seq": ("SEQ_2_SEQ_LM", "AutoModelForSeq2SeqLM"),
    "causal": ("CAUSAL_LM", "AutoModelForCausalLM"),
}


def family(bank: PromptBank) -> str:
    """The backbone family the bank was trained on: recorded in the bank, else read from the recorded backbone's
    config when it can be loaded, else ``seq2seq`` (banks that record neither predate causal LMs)."""
    if bank.config.backbone_family is not None:
        return bank.config.backbone_family
    if bank.config.backbone:
        from transformers import AutoConfig

        try:
            return backbone_family(AutoConfig.from_pretrained(resolve_model_name(bank.config.backbone)))
        except (OSError, ValueError):
            pass
    return "seq2seq"


def loading_snippet(auto_class: str, backbone: str | None, out: Path) -> list[str]:
    """The README's lines that load an exported adapter in PEFT (a Markdown code block)."""
    return [
        "```python",
        "from peft import PeftModel",
        f"from transformers import {auto_class}",
        f'model = PeftModel.from_pretrained({auto_class}.from_pretrained("{backbone}"), "{out}")',
        "```",
    ]


def is_export(folder: Path) -> bool:
    """Whether ``folder`` holds an earlier ``compt export`` (which a new export may replace)."""
    return (folder / EXPORT_RECORD).is_file()
