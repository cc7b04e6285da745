"""Load a frozen T5-family backbone and insert prompts into its encoder input."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from compt.errors import BackboneNotFoundError

#: the tiny randomly initialised T5 that ships with compt (tests and the demo)
TINY_MODEL_DIR = Path(__file__).parent / "assets" / "tiny-t5"


def resolve_model_name(name: str) -> str:
    """Map the alias ``tiny`` to the bundled tiny model; anything else is a hub name or a directory."""
    return str(TINY_MODEL_DIR) if name in ("tiny", "tiny-t5") else name


def load_backbone(
    name: str, dtype: torch.dtype | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a T5-family seq2seq model and its tokenizer by hub name or local directory, frozen.

    Raises:
        BackboneNotFoundError: with one message naming the model and the offline ways out.
    """
    path = resolve_model_name(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSeq2SeqLM.from_pretrained(path, dtype=dtype)
    except OSError as err:  # transformers raises OSError for missing repos, files and offline misses
        raise BackboneNotFoundError(
            f"could not load the backbone {name!r}: it is neither a local model directory nor in the "
            "Hugging Face cache, and the hub could not be reached (HF_HUB_OFFLINE="
            f"{_offline_flag()}). Ways out: run once with internet so it is cached, "
            f"or download it elsewhere with `huggingface-cli download {name} --local-dir DIR` and pass "
            "model.name=DIR, or use model.name=tiny (the bundled tiny T5) for a smoke test. "
            f"(cause: {str(err).splitlines()[0] if str(err) else type(err).__name__})"
        ) from None
    freeze(model)
    return model, tokenizer


def _offline_flag() -> str:
    import os

    return os.environ.get("HF_HUB_OFFLINE", "0")


def freeze(model: nn.Module) -> nn.Module:
    """Turn off gradients for every parameter of ``model``."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def set_dropout(model: nn.Module, active: bool) -> None:
    """Switch every dropout layer of ``model`` on or off, whatever the module's train/eval mode.

    ``active=False`` sets ``p=0`` (kept in ``model`` so Lightning's ``train()`` calls cannot re-enable it);
    the original probabilities are remembered and restored by ``active=True``.
    """
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            if not hasattr(module, "_compt_p"):
                module._compt_p = module.p
            module.p = module._compt_p if active else 0.0


def insert_prompts(
    inputs_embeds: Tensor,
    attention_mask: Tensor,
    prompts: Tensor,
    prompt_mask: Tensor | None = None,
    position: str = "after",
) -> tuple[Tensor, Tensor]:
    """Insert one prompt per example into a right-padded encoder input.

    Args:
        inputs_embeds: token embeddings ``(B, N, d)``, right-padded, each row ending with ``</s>``.
        attention_mask: ``(B, N)``, 1 on tokens, 0 on padding.
        prompts: ``(B, L, d)``, each example's target prompt.
        prompt_mask: ``(B, L)``, which prompt rows attend (``None`` = all).
        position: ``before`` — ``[prompt, text, </s>]``; ``after`` — ``[text, prompt, </s>]`` (the paper).

    Returns:
        ``(B, N + L, d)`` embeddings and their ``(B, N + L)`` attention mask (padding stays at the end).
    """
    batch, length = prompts.shape[:2]
    prompts = prompts.to(inputs_embeds.dtype)
    if prompt_mask is None:
        prompt_mask = torch.ones(batch, length, dtype=attention_mask.dtype, device=attention_mask.device)
    prompt_mask = prompt_mask.to(attention_mask.dtype)
    if position == "before":
        return torch.cat([prompts, inputs_embeds], 1), torch.cat([prompt_mask, attention_mask], 1)
    if position != "after":
        raise ValueError(f"position={position!r}; choose before or after")
    n_tokens = inputs_embeds.shape[1]
    # Output slot j takes: text token j (j < eos), prompt row j - eos (eos <= j < eos + L), else token j - L.
    eos = attention_mask.sum(1, keepdim=True) - 1  # (B, 1) index of </s>
    slots = torch.arange(n_tokens + length, device=inputs_embeds.device).unsqueeze(0)  # (1, N+L)
    in_prompt = (slots >= eos) & (slots < eos + length)
    token_index = torch.where(slots < eos, slots, slots - length).clamp(0, n_tokens - 1)
    source = torch.where(in_prompt, n_tokens + slots - eos, token_index)  # index into [tokens, prompt]
    combined = torch.cat([inputs_embeds, prompts], 1)  # (B, N+L, d)
    embeds = combined.gather(1, source.unsqueeze(-1).expand(-1, -1, combined.shape[-1]))
    combined_mask = torch.cat([attention_mask, prompt_mask], 1)
    return embeds, combined_mask.gather(1, source)
