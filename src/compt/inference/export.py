"""The library behind ``compt export``: one task's composed target prompt as a Hugging Face PEFT
prompt-tuning adapter (``--format peft``), or every task's composed prompt as one safetensors file of
``(L, d)`` tensors named ``TASK/MASK`` (``--format embeds``, :func:`export_embeds`), for servers that take
prompt embeddings with each request.

The composed prompt (evaluation-mode router weights, optional mask) is fixed, so it is an ordinary soft prompt:
``PromptTuningConfig(task_type=SEQ_2_SEQ_LM | CAUSAL_LM, num_virtual_tokens=L_t, token_dim=d)`` (the task type
from the bank's backbone family) with ``prompt_embeddings`` = the prompt. PEFT puts a prompt-tuning prompt
*before* the input tokens; a bank trained with ``position=after`` (the paper's placement) was tuned for the
slot after the text, so its export is refused unless ``allow_position_change`` is given (then it is exported
with a warning).

    peft_model = peft.PeftModel.from_pretrained(backbone, "exported/rte")
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save as safetensors_bytes
from torch import Tensor

from compt.atomic import atomic_file, atomic_folder
from compt.errors import ConfigError, ExportError
from compt.inference.export_adapter import export_adapter
from compt.inference.export_common import (
    EXPORT_RECORD,
    PEFT_TASK_TYPES,
    family,
    is_export,
    loading_snippet,
)
from compt.models.backbone import resolve_model_name
from compt.prompts.bank import PromptBank
from compt.prompts.masks import masks_for, parse_mask
from compt.runs import locate_bank
from compt.utils import evaluating

FORMATS = ("peft", "embeds")
#: ``format`` in an embeds file's metadata
EMBEDS_FORMAT = "compt-embeds"
#: where each family's prompt goes among the input embeddings, by ``position`` (an embeds file's ``layout``)
EMBEDS_LAYOUTS = {
    ("seq2seq", "after"): "encoder input: [text tokens] [prompt] </s>",
    ("seq2seq", "before"): "encoder input: [prompt] [text tokens] </s>",
    ("causal", "after"): "[BOS] [text tokens] [prompt] [answer tokens] (BOS where the tokenizer adds one)",
    ("causal", "before"): "[prompt] [BOS] [text tokens] [answer tokens] (BOS where the tokenizer adds one)",
}
PEFT_POSITION = "before"
#: PEFT's adapter weights file and the state-dict key of a prompt-tuning prompt
PEFT_WEIGHTS_FILE = "adapter_model.safetensors"
PEFT_PROMPT_KEY = "prompt_embeddings"
PEFT_NOTES = {
    "seq2seq": "encoder prompt only (`num_transformer_submodules=1`).",
    "causal": "the prompt goes before the input ids (`[BOS] text`, BOS where the tokenizer adds one); "
    "compt trained the answer to follow the text after a space, ending with EOS.",
}


@dataclass
class ExportedPrompt:
    """A task's composed prompt ready to save: ``(L, d)`` rows (masked-out rows already removed)."""

    task: str
    mask: str
    prompt: Tensor
    bank: PromptBank
    router_weights: list[float] | None
    family: str = "seq2seq"
    """the backbone family (:func:`family`): decides the PEFT task type"""


@torch.no_grad()
def composed_prompt(bank: PromptBank, task: str, mask: str = "total") -> ExportedPrompt:
    """The target prompt of ``task`` in evaluation mode under ``mask``; rows a mask removes
    (mcat with dropped sources) are left out."""
    if task not in bank.task_names:
        raise ExportError(
            f"this bank was not trained on task {task!r}; its tasks are: {', '.join(bank.task_names)}"
        )
    if bank.config.traits.per_example:
        raise ExportError(
            f"method {bank.config.method!r} composes each example's prompt from its input: it has no fixed "
            "prompt per task to export (serve it with compt serve)"
        )
    index = bank.task_names.index(task)
    with evaluating(bank):
        prompts, rows = bank(mask)  # (T, L, d), (T, L) | None
        weights = bank.router_weights(mask)
    prompt = prompts[index] if rows is None else prompts[index][rows[index].bool()]
    router = None if weights is None else weights[index].tolist()
    return ExportedPrompt(task, mask, prompt.detach().float().cpu().contiguous(), bank, router, family(bank))


def check_position(bank: PromptBank, allow_position_change: bool) -> None:
    """Refuse (or warn about) a bank trained with its prompt somewhere PEFT will not put it."""
    position = bank.config.position
    if position == PEFT_POSITION:
        return
    message = (
        f"this bank was trained with prompt.position={position!r} (prompt after the input text), but PEFT "
        "prompt tuning puts the prompt BEFORE the input tokens, so the exported adapter will not behave "
        "like the trained model."
    )
    if not allow_position_change:
        raise ExportError(
            message + " Train with prompt.position=before for a faithful export, or pass "
            "--allow-position-change (allow_position_change=True) to export anyway."
        )
    warnings.warn(message + " Exporting anyway (--allow-position-change).", stacklevel=2)


def write_peft_adapter(exported: ExportedPrompt, out: Path, backbone: str | None) -> Path:
    """``adapter_config.json`` + ``adapter_model.safetensors`` loadable by ``PeftModel.from_pretrained``."""
    from peft import PromptTuningConfig

    length, d_model = exported.prompt.shape
    config = PromptTuningConfig(
        task_type=PEFT_TASK_TYPES[exported.family][0],
        num_virtual_tokens=length,
        token_dim=d_model,
        num_transformer_submodules=1,  # one prompt (PEFT's seq2seq default 2 would add a decoder one)
        base_model_name_or_path=backbone,
    )
    out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(str(out))
    # through Python's file API, so that a full disk is an OSError like any other (safetensors' own writer
    # raises its SafetensorError) and the file gets the user's umask (safetensors writes 0600)
    (out / PEFT_WEIGHTS_FILE).write_bytes(safetensors_bytes({PEFT_PROMPT_KEY: exported.prompt}))
    return out


def write_readme(
    exported: ExportedPrompt, out: Path, source: Path, position_changed: bool, into: Path | None = None
) -> Path:
    """``README.md`` in the adapter folder ``out`` (written into ``into`` when the folder is being built
    elsewhere): what it holds, the placement it assumes and how to load it."""
    c = exported.bank.config
    task_type, auto_class = PEFT_TASK_TYPES[exported.family]
    backbone = resolve_model_name(c.backbone) if c.backbone else None
    length, d_model = exported.prompt.shape
    lines = [
        f"# ComPT prompt for `{exported.task}` as a PEFT prompt-tuning adapter",
        "",
        f"- exported from: `{source}` (method `{c.method}`, tasks {', '.join(c.task_names)})",
        f"- backbone: `{backbone}`",
        f"- mask: `{exported.mask}`; prompt rows: {length} (L_t), width {d_model} (d)",
        f"- router weights (evaluation mode): {exported.router_weights}",
        f"- placement assumed: the prompt goes **{PEFT_POSITION}** the input tokens (PEFT prompt tuning); "
        f"the bank was trained with `position={c.position}`"
        + (
            " — **the placement differs from training; expect different predictions**."
            if position_changed
            else "."
        ),
        f"- PEFT task type `{task_type}`: {PEFT_NOTES[exported.family]}",
        "",
        *loading_snippet(auto_class, backbone, out),
        "",
        "Inputs use compt's text format, e.g. `rte: sentence1: ... sentence2: ...` (see `compt.tasks`).",
    ]
    path = (into or out) / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def export_peft(
    path: str | Path,
    task: str,
    out: str | Path,
    mask: str = "total",
    allow_position_change: bool = False,
) -> Path:
    """Export ``task``'s composed prompt from a run (or bank) folder as a PEFT adapter in ``out`` (a LoRA or
    prefix run's own PEFT adapter: :func:`compt.inference.export_adapter.export_adapter`).

    The adapter is built in a temporary folder beside ``out`` and swapped in whole (:func:`atomic_folder`), so
    ``out`` holds the previous export or the new one, never a mix (nor a config without weights). An existing
    ``out`` is replaced only when it is empty or an earlier export (it holds ``compt_export.json``).

    Raises:
        ExportError: the bank cannot be exported as asked.
        OutputWriteError: ``out`` cannot be written (full disk, read-only, a folder that is not an export).
    """
    files = locate_bank(path)
    bank = PromptBank.load(files.bank_dir)
    if bank.config.traits.adapter is not None:  # a LoRA or prefix run: its bank/ is a PEFT adapter already
        return export_adapter(bank, files, task, out, mask)
    check_position(bank, allow_position_change)
    exported = composed_prompt(bank, task, mask)
    out = Path(out)
    backbone = resolve_model_name(bank.config.backbone) if bank.config.backbone else None
    meta = {
        "task": task,
        "mask": mask,
        "method": bank.config.method,
        "source": str(files.bank_dir),
        "position_trained": bank.config.position,
        "position_assumed": PEFT_POSITION,
        "task_type": PEFT_TASK_TYPES[exported.family][0],
    }
    with atomic_folder(out, is_export, elsewhere="--out DIR") as build:
        write_peft_adapter(exported, build, backbone)
        (build / EXPORT_RECORD).write_text(json.dumps(meta, indent=2) + "\n")
        write_readme(exported, out, files.bank_dir, bank.config.position != PEFT_POSITION, into=build)
    return out


def export_embeds(
    path: str | Path, out: str | Path, tasks: list[str] | None = None, masks: list[str] | None = None
) -> tuple[Path, list[str]]:
    """Write the composed prompt of each of ``tasks`` (default: every task of the bank) under each of ``masks``
    (default ``["total"]``; ``["all"]``: every mask the method has) to the safetensors file ``out``, whole or
    not at all: one float32 ``(L, d)`` tensor named ``TASK/MASK`` each (an mcat mask's removed rows left
    out). The file's metadata names the backbone, its family, the placement (``position`` and ``layout``),
    the method and the source bank.

    Returns:
        ``(out, the tensor names written)``.
    Raises:
        ExportError: an unknown task or mask, a method without fixed prompts, ``out`` not ``*.safetensors``.
        OutputWriteError: ``out`` cannot be written.
    """
    out = Path(out)
    if out.suffix != ".safetensors":
        raise ExportError(f"--out {out}: --format embeds writes one file; name it FILE.safetensors")
    files = locate_bank(path)
    bank = PromptBank.load(files.bank_dir)
    c = bank.config
    masks = masks or ["total"]
    if masks == ["all"]:
        masks = masks_for(c.method, c.n_sources)
    for mask in masks:
        try:
            parse_mask(mask, c.method, c.n_sources)
        except ConfigError as err:
            raise ExportError(str(err)) from None
    prompts = {
        f"{task}/{mask}": composed_prompt(bank, task, mask)
        for task in tasks or c.task_names
        for mask in masks
    }
    kind = family(bank)
    metadata = {
        "format": EMBEDS_FORMAT,
        "backbone": resolve_model_name(c.backbone) if c.backbone else "",
        "family": kind,
        "position": c.position,
        "layout": EMBEDS_LAYOUTS[(kind, c.position)],
        "method": c.method,
        "tasks": json.dumps(tasks or c.task_names),
        "masks": json.dumps(masks),
        "router_weights": json.dumps({name: p.router_weights for name, p in prompts.items()}),
        "source": str(files.bank_dir),
    }
    data = safetensors_bytes({name: p.prompt for name, p in prompts.items()}, metadata=metadata)
    with atomic_file(out, "wb", elsewhere="--out FILE.safetensors") as handle:
        handle.write(data)
    return out, list(prompts)
