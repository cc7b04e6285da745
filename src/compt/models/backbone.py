"""Load a frozen backbone (a T5-family seq2seq model or a decoder-only causal LM) and insert prompts into a
seq2seq encoder input (the causal layout lives in :mod:`compt.models.causal`)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
from transformers.utils import ModelOutput

from compt.errors import BackboneNotFoundError, ConfigError
from compt.models.tokenization import prepare_tokenizer

#: the tiny randomly initialised T5 that ships with compt (tests and the demo)
TINY_MODEL_DIR = Path(__file__).parents[1] / "assets" / "tiny-t5"
#: the tiny decoder-only (Llama-architecture) model that ships with compt (tests and ``experiment=demo_causal``)
TINY_CAUSAL_DIR = Path(__file__).parents[1] / "assets" / "tiny-causal"
ALIASES = {"tiny": TINY_MODEL_DIR, "tiny-t5": TINY_MODEL_DIR, "tiny-causal": TINY_CAUSAL_DIR}


#: what this transformers release calls the KV cache, as a forward keyword and as an output field: ``cache``
#: in recent 5.x releases, ``past_key_values`` in earlier ones (5.0 to ~5.17)
CACHE_FIELD = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


def with_cache(cache: object) -> dict[str, object]:
    """The forward keyword that hands a KV cache back to the backbone, under this release's name."""
    return {CACHE_FIELD: cache}


def output_cache(output: ModelOutput) -> object:
    """The KV cache that a backbone forward with ``use_cache=True`` returned."""
    return getattr(output, CACHE_FIELD)


#: the weight dtypes a frozen backbone can be loaded in (``model.dtype``); never fp16, which overflows in T5
BACKBONE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def weights_dtype(name: str) -> torch.dtype:
    """The torch dtype of ``model.dtype=name``.

    Raises:
        ConfigError: another name (fp16 among them: T5's activations overflow in it).
    """
    if name not in BACKBONE_DTYPES:
        raise ConfigError(
            f"model.dtype={name!r}: choose one of {', '.join(BACKBONE_DTYPES)} (bf16 keeps the frozen weights in "
            "bfloat16; fp16 is not offered, T5 overflows in it)"
        )
    return BACKBONE_DTYPES[name]


def resolve_model_name(name: str) -> str:
    """Map the aliases ``tiny`` (the bundled tiny T5) and ``tiny-causal`` (the bundled tiny causal LM) to their
    directories; anything else is a hub name or a directory."""
    return str(ALIASES[name]) if name in ALIASES else name


def backbone_family(model: PreTrainedModel | PretrainedConfig) -> str:
    """``seq2seq`` for an encoder-decoder (T5 family), ``causal`` for a decoder-only LM, from its config.

    Raises:
        ConfigError: the architecture is neither (e.g. an encoder-only BERT).
    """
    config = getattr(model, "config", model)
    if config.is_encoder_decoder:
        return "seq2seq"
    if config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return "causal"
    raise ConfigError(
        f"model_type {config.model_type!r} is neither an encoder-decoder (T5 family) nor a causal language "
        "model: compt needs one of the two as its backbone"
    )


def load_backbone(
    name: str, dtype: torch.dtype | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a backbone and its tokenizer by hub name or local directory, frozen.

    The family comes from the model's own config (:func:`backbone_family`): an encoder-decoder loads with
    ``AutoModelForSeq2SeqLM`` (T5 family), a decoder-only model with ``AutoModelForCausalLM``. The tokenizer is
    marked with the family (:func:`compt.models.tokenization.prepare_tokenizer`; a causal one pads with EOS when it
    has no pad token).

    Raises:
        BackboneNotFoundError: with one message naming the model and the offline ways out.
        ConfigError: the model is neither a seq2seq nor a causal LM, or its tokenizer's special tokens lie
            outside its embedding (:func:`check_vocabulary`).
    """
    path = resolve_model_name(name)
    try:
        config = AutoConfig.from_pretrained(path)
        family = backbone_family(config)
        tokenizer = AutoTokenizer.from_pretrained(path)
        auto_class = AutoModelForSeq2SeqLM if family == "seq2seq" else AutoModelForCausalLM
        model = auto_class.from_pretrained(path, config=config, dtype=dtype)
    except OSError as err:  # transformers raises OSError for missing repos, files and offline misses
        raise BackboneNotFoundError(
            f"could not load the backbone {name!r}: it is neither a local model directory nor in the "
            "Hugging Face cache, and the hub could not be reached (HF_HUB_OFFLINE="
            f"{_offline_flag()}). Ways out: run once with internet so it is cached, "
            f"or download it elsewhere with `hf download {name} --local-dir DIR` and pass "
            "model.name=DIR, or use model.name=tiny (the bundled tiny T5) or model.name=tiny-causal (the bundled "
            "tiny causal LM) for a smoke test. "
            f"(cause: {str(err).splitlines()[0] if str(err) else type(err).__name__})"
        ) from None
    freeze(model)
    tokenizer = prepare_tokenizer(tokenizer, family)
    check_vocabulary(model, tokenizer, name)
    return model, tokenizer


def check_vocabulary(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, name: str) -> None:
    """Refuse a tokenizer whose special tokens (pad, EOS, BOS: every batch uses them) have no row in the model's
    input embedding, e.g. a directory whose tokenizer is not the model's.

    Raises:
        ConfigError: naming the token, its id and the embedding's size.
    """
    rows = model.get_input_embeddings().num_embeddings
    for role in ("pad", "eos", "bos"):
        token_id = getattr(tokenizer, f"{role}_token_id")
        if token_id is not None and token_id >= rows:
            raise ConfigError(
                f"the tokenizer of {name!r} gives its {role} token {getattr(tokenizer, f'{role}_token')!r} the id "
                f"{token_id}, but the model's embedding has {rows} rows (ids 0 to {rows - 1}): the tokenizer is "
                "not this model's (check tokenizer files and config.json's model_type in that directory)"
            )


def checkpoint_activations(model: PreTrainedModel) -> None:
    """Recompute the backbone's layer activations in the backward pass instead of keeping them (less memory
    for a slower step); only in training mode, as transformers does it. Non-reentrant, so gradients reach the
    prompts through a frozen backbone. ``activation_checkpointing_enable`` in recent transformers releases,
    ``gradient_checkpointing_enable`` before.

    Raises:
        ConfigError: the architecture does not support it.
    """
    if not model.supports_gradient_checkpointing:
        raise ConfigError(f"{type(model).__name__} does not support activation checkpointing")
    options = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=options)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=options)


def _offline_flag() -> str:
    return os.environ.get("HF_HUB_OFFLINE", "0")


def freeze(model: nn.Module) -> nn.Module:
    """Turn off gradients for every parameter of ``model``."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def set_dropout(model: nn.Module, active: bool) -> None:
    """Switch every dropout layer of ``model`` on or off, whatever the module's train/eval mode.

    ``active=False`` sets ``p=0`` (kept in ``model`` so Lightning's ``train()`` calls cannot re-enable it);
    the original probabilities are remembered and restored by ``active=True``. Besides ``nn.Dropout`` layers
    this covers the float probabilities attention modules pass to a functional dropout of their attention
    weights: ``dropout`` in T5's attention, ``attention_dropout`` in Llama-style ones (Llama, Qwen2, Mistral...).
    """
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            _switch(module, "p", active)
            continue
        for name in FUNCTIONAL_DROPOUTS:
            if isinstance(getattr(module, name, None), float):
                _switch(module, name, active)


#: float attributes holding the probability of a functional attention-weight dropout (T5, Llama-style)
FUNCTIONAL_DROPOUTS = ("dropout", "attention_dropout")


def _switch(module: nn.Module, name: str, active: bool) -> None:
    """Set ``module.<name>`` to 0 or back to its original value (remembered as ``_compt_<name>``)."""
    saved = f"_compt_{name}"
    if not hasattr(module, saved):
        setattr(module, saved, getattr(module, name))
    setattr(module, name, getattr(module, saved) if active else 0.0)


def prompt_rows(
    inputs_embeds: Tensor, attention_mask: Tensor, prompts: Tensor, prompt_mask: Tensor | None
) -> tuple[Tensor, Tensor]:
    """``prompts`` ``(B, L, d)`` in the embeddings' dtype and their mask ``(B, L)`` in the attention mask's
    dtype (all ones when ``prompt_mask`` is None)."""
    if prompt_mask is None:
        prompt_mask = torch.ones(prompts.shape[:2], dtype=attention_mask.dtype, device=attention_mask.device)
    return prompts.to(inputs_embeds.dtype), prompt_mask.to(attention_mask.dtype)


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
    length = prompts.shape[1]
    if length == 0:  # no prompt (a PEFT adapter's bank): the input as it is
        return inputs_embeds, attention_mask
    prompts, prompt_mask = prompt_rows(inputs_embeds, attention_mask, prompts, prompt_mask)
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
