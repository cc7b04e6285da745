"""``compt export --format peft`` for a PEFT adapter run (``method=lora`` / ``method=prefix``): its ``bank/``
folder already holds the adapter as PEFT saved it (``adapter_config.json``, ``adapter_model.safetensors``);
the export is those files, compt's record of the export and a README, swapped in whole.

    peft_model = peft.PeftModel.from_pretrained(backbone, "exported/lora")

One adapter serves every task of the run (the task is named in the text), so ``--task`` only says which task
the README's example shows; there is no prompt to mask (``--mask total``).
"""

from __future__ import annotations

import json
from pathlib import Path

from compt.adapters.bank import AdapterBank
from compt.adapters.peft_setup import PEFT_FILES
from compt.atomic import atomic_folder
from compt.errors import ExportError
from compt.inference.export_common import EXPORT_RECORD, PEFT_TASK_TYPES, family, is_export, loading_snippet
from compt.models.backbone import resolve_model_name
from compt.runs import BankLocation

#: how compt fed each backbone family (a PEFT user feeds the same)
FAMILY_NOTES = {
    "seq2seq": "the encoder reads the text (with `</s>`); the answer is the decoder's output.",
    "causal": "the input is `[BOS] text` (BOS where the tokenizer adds one); the answer follows after a space "
    "and ends with EOS.",
}
#: what a user must know about an adapter kind inside PEFT
ADAPTER_NOTES = {
    "lora": "LoRA layers in the backbone's attention projections; `merge_and_unload()` folds them into the weights.",
    "prefix": "key/value prefixes (for T5: in the decoder's self-attention, PEFT's placement). PEFT's forward "
    "(teacher forcing, rank classification) applies them; PEFT 0.21's `generate` drops them under transformers "
    "releases that name the cache argument `cache` (transformers warns that it ignores `past_key_values`): "
    "generate with `compt predict`, or score answers with the forward pass.",
}


def export_adapter(
    bank: AdapterBank, files: BankLocation, task: str, out: str | Path, mask: str = "total"
) -> Path:
    """Write the run's PEFT adapter (``bank``, loaded from ``files``) to ``out`` as PEFT saved it.

    Raises:
        ExportError: ``task`` is not one of the run's, or a mask other than ``total`` is asked for.
        OutputWriteError: ``out`` cannot be written.
    """
    kind = bank.config.traits.adapter
    if task not in bank.task_names:
        raise ExportError(
            f"this adapter was not trained on task {task!r}; its tasks are: {', '.join(bank.task_names)}"
        )
    if mask != "total":
        raise ExportError(
            f"--mask {mask}: method={bank.method} trains an adapter, no prompt to mask; use --mask total"
        )
    out = Path(out)
    task_type, auto_class = PEFT_TASK_TYPES[family(bank)]
    meta = {
        "task": task,
        "tasks": bank.task_names,
        "method": bank.method,
        "source": str(files.bank_dir),
        "task_type": task_type,
    }
    backbone = resolve_model_name(bank.config.backbone) if bank.config.backbone else None
    with atomic_folder(out, is_export, elsewhere="--out DIR") as build:
        for name in PEFT_FILES:
            (build / name).write_bytes((files.bank_dir / name).read_bytes())
        (build / EXPORT_RECORD).write_text(json.dumps(meta, indent=2) + "\n")
        readme = [
            f"# The `{kind}` adapter of a compt run, as PEFT saved it",
            "",
            f"- exported from: `{files.bank_dir}` (method `{bank.method}`, one adapter for the tasks "
            f"{', '.join(bank.task_names)})",
            f"- backbone: `{backbone}`; PEFT task type `{task_type}`: {FAMILY_NOTES[family(bank)]}",
            f"- {ADAPTER_NOTES[kind]}",
            "",
            *loading_snippet(auto_class, backbone, out),
            "",
            f"Inputs use compt's text format, the task named first, e.g. `{task}: ...` (see `compt.tasks`).",
        ]
        (build / "README.md").write_text("\n".join(readme) + "\n")
    return out
