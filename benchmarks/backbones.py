"""The backbone shapes measured, and what depends on the backbone's family.

A shape is a frozen backbone (and a tokenizer when one fits its vocabulary). :class:`Seq2SeqShape` (T5) and
:class:`CausalShape` (decoder-only LMs) hold the parts that depend on the family: a synthetic batch, the floor
step (the frozen backbone alone on an ``inputs_embeds`` of the prompted length), the FLOPs of a train step and
the pass over the prompted input that every evaluation shares.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.nn import functional as F
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    T5Config,
    T5ForConditionalGeneration,
)

from compt.models.backbone import freeze, load_backbone
from compt.models.causal import position_ids
from compt.models.seq2seq import ComptModel
from harness import Bench

#: t5-base's architecture (random weights: the compute cost does not depend on them)
T5_BASE = dict(
    d_model=768,
    d_ff=3072,
    num_layers=12,
    num_decoder_layers=12,
    num_heads=12,
    d_kv=64,
    vocab_size=32128,
    decoder_start_token_id=0,
    pad_token_id=0,
    eos_token_id=1,
)

#: SmolLM2-135M's architecture (HuggingFaceTB/SmolLM2-135M config.json; random weights, nothing downloaded)
SMOLLM2_135M = dict(
    vocab_size=49152,
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    max_position_embeddings=8192,
    rope_theta=100000.0,
    rms_norm_eps=1e-5,
    tie_word_embeddings=True,
    bos_token_id=0,
    eos_token_id=0,
)

FLOPS_FORMULA = (
    "per step: 4*B*(N_enc*T_enc + N_dec*T_dec + V*d*T_dec); N_enc/N_dec = non-embedding parameters of "
    "the encoder/decoder stack, T_enc = text + prompt tokens, T_dec = target tokens, V*d = tied LM head; "
    "4 = forward 2N + backward w.r.t. activations 2N (frozen weights: no weight gradients)"
)


@dataclass
class BackboneShape:
    """A frozen backbone (and its tokenizer, when one fits its vocabulary) on the benchmark's device; a family
    subclass adds the floor step, the FLOPs, PEFT's batch and the evaluation's shared pass."""

    name: str
    backbone: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase | None
    #: PEFT's ``TaskType`` for prompt tuning on this family
    peft_task_type: ClassVar[str]
    flops_formula: ClassVar[str]

    @property
    def d_model(self) -> int:
        return self.backbone.get_input_embeddings().embedding_dim

    def make_batch(
        self, batch: int, n_tokens: int, target_len: int, n_tasks: int, device: torch.device, seed: int = 0
    ) -> dict[str, Tensor]:
        """A full-length (no padding) text batch marked as the family's tokenizer marks it
        (:meth:`mark_text`), targets of ``target_len`` tokens ending with EOS, tasks mixed (task id = row mod
        ``n_tasks``)."""
        config = self.backbone.config
        g = torch.Generator().manual_seed(seed)
        input_ids = self.mark_text(torch.randint(3, config.vocab_size, (batch, n_tokens), generator=g))
        labels = torch.randint(3, config.vocab_size, (batch, target_len), generator=g)
        labels[:, -1] = config.eos_token_id
        return {
            "input_ids": input_ids.to(device),
            "attention_mask": torch.ones(batch, n_tokens, dtype=torch.long, device=device),
            "task_ids": (torch.arange(batch) % n_tasks).to(device),
            "labels": labels.to(device),
        }

    def mark_text(self, input_ids: Tensor) -> Tensor:
        raise NotImplementedError


@dataclass
class Seq2SeqShape(BackboneShape):
    """A frozen encoder-decoder backbone (T5 family)."""

    peft_task_type: ClassVar[str] = "SEQ_2_SEQ_LM"
    flops_formula: ClassVar[str] = FLOPS_FORMULA

    def mark_text(self, input_ids: Tensor) -> Tensor:
        """An encoder input ends with ``</s>``."""
        input_ids[:, -1] = self.backbone.config.eos_token_id
        return input_ids

    def floor_step(self, batch: dict[str, Tensor], total_len: int, bench: Bench) -> Callable[[], None]:
        """The frozen backbone's forward + backward w.r.t. a leaf ``inputs_embeds`` of ``total_len`` tokens
        (text + prompt): the train step without any prompt machinery."""
        n_batch = batch["input_ids"].shape[0]
        g = torch.Generator().manual_seed(1)
        embeds = torch.randn(n_batch, total_len, self.d_model, generator=g).to(bench.device).requires_grad_()
        mask = torch.ones(n_batch, total_len, dtype=torch.long, device=bench.device)
        labels = batch["labels"]

        def step() -> None:
            embeds.grad = None
            with bench.autocast():
                loss = self.backbone(inputs_embeds=embeds, attention_mask=mask, labels=labels).loss
            loss.backward()

        return step

    def peft_batch(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The batch as PEFT's seq2seq prompt tuning takes it: encoder input and decoder labels."""
        return {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}

    def step_flops(self, batch: int, input_tokens: int, target_tokens: int) -> float:
        """FLOPs of one frozen-backbone train step (:data:`FLOPS_FORMULA`); attention scores left out."""
        embed = self.backbone.get_input_embeddings().weight.numel()
        n_enc = sum(p.numel() for p in self.backbone.get_encoder().parameters()) - embed
        n_dec = sum(p.numel() for p in self.backbone.get_decoder().parameters()) - embed
        return 4.0 * batch * (n_enc * input_tokens + n_dec * target_tokens + embed * target_tokens)

    def shared_pass(self, model: ComptModel, inputs: dict[str, Tensor]) -> Any:
        """The part every evaluation mode runs: the prompted input and the encoder pass over it."""
        embeds, attention = model.prompted_inputs(**inputs)
        return self.backbone.get_encoder()(inputs_embeds=embeds, attention_mask=attention)


CAUSAL_FLOPS_FORMULA = (
    "per step: 4*B*(N_layers*(T_text + L + M - 1) + V*d*M); N_layers = non-embedding parameters of the decoder "
    "stack, T_text + L + M - 1 = the positions of one pass (text, prompt, answer fed teacher-forced), V*d = the "
    "LM head on the M answer positions only (logits_to_keep)"
)


@dataclass
class CausalShape(BackboneShape):
    """A frozen decoder-only LM; compt's :class:`compt.models.causal.CausalComptModel` runs on it (``build_model``
    picks the class)."""

    peft_task_type: ClassVar[str] = "CAUSAL_LM"
    flops_formula: ClassVar[str] = CAUSAL_FLOPS_FORMULA

    def mark_text(self, input_ids: Tensor) -> Tensor:
        """A text starts with BOS (compt's causal tokenisation of a Llama-style tokenizer)."""
        input_ids[:, 0] = self.backbone.config.bos_token_id
        return input_ids

    def floor_step(self, batch: dict[str, Tensor], total_len: int, bench: Bench) -> Callable[[], None]:
        """The frozen LM's forward + backward w.r.t. a leaf ``inputs_embeds`` of the length compt's train step
        runs (text + prompt = ``total_len``, then the answer fed teacher-forced), the LM head on the answer
        positions only, as :meth:`CausalComptModel.answer_logits` does: the step without prompt machinery."""
        labels = batch["labels"]
        n_batch, length = labels.shape[0], total_len + labels.shape[1] - 1
        g = torch.Generator().manual_seed(1)
        embeds = torch.randn(n_batch, length, self.d_model, generator=g).to(bench.device).requires_grad_()
        mask = torch.ones(n_batch, length, dtype=torch.long, device=bench.device)
        positions = position_ids(mask)

        def step() -> None:
            embeds.grad = None
            with bench.autocast():
                logits = self.backbone(
                    inputs_embeds=embeds,
                    attention_mask=mask,
                    position_ids=positions,
                    logits_to_keep=labels.shape[1],
                ).logits
            loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100)
            loss.backward()

        return step

    def peft_batch(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The batch as PEFT's causal prompt tuning takes it: one sequence ``text answer``, labels -100 on the
        text (PEFT computes the LM head on every position, compt on the answer only)."""
        text, answer = batch["input_ids"], batch["labels"]
        return {
            "input_ids": torch.cat([text, answer], 1),
            "attention_mask": torch.ones(
                text.shape[0], text.shape[1] + answer.shape[1], dtype=torch.long, device=text.device
            ),
            "labels": torch.cat([torch.full_like(text, -100), answer], 1),
        }

    def step_flops(self, batch: int, input_tokens: int, target_tokens: int) -> float:
        """FLOPs of one frozen-LM train step (:data:`CAUSAL_FLOPS_FORMULA`); attention scores left out."""
        embed = self.backbone.get_input_embeddings().weight.numel()
        n_layers = sum(p.numel() for p in self.backbone.model.layers.parameters())
        return 4.0 * batch * (n_layers * (input_tokens + target_tokens - 1) + embed * target_tokens)

    def shared_pass(self, model: ComptModel, inputs: dict[str, Tensor]) -> Any:
        """The part every evaluation mode runs: the prompted prefix, once, with its KV cache."""
        return model._prefix_step(**inputs, mask=None)


def tiny(device: torch.device) -> Seq2SeqShape:
    """The committed tiny T5 and its tokenizer."""
    backbone, tokenizer = load_backbone("tiny")
    return Seq2SeqShape("tiny", backbone.to(device), tokenizer)


def t5_base(device: torch.device) -> Seq2SeqShape:
    """t5-base's architecture with random weights (nothing downloaded); no tokenizer fits it offline."""
    torch.manual_seed(0)
    backbone = freeze(T5ForConditionalGeneration(T5Config(**T5_BASE)))
    return Seq2SeqShape("t5-base", backbone.to(device), None)


def tiny_causal(device: torch.device) -> CausalShape:
    """The committed tiny causal LM (Llama architecture) and its tokenizer."""
    backbone, tokenizer = load_backbone("tiny-causal")
    return CausalShape("tiny-causal", backbone.to(device), tokenizer)


def smollm2_135m(device: torch.device) -> CausalShape:
    """SmolLM2-135M's architecture with random weights (nothing downloaded); no tokenizer fits it offline."""
    torch.manual_seed(0)
    backbone = freeze(LlamaForCausalLM(LlamaConfig(**SMOLLM2_135M)))
    return CausalShape("smollm2-135m", backbone.to(device), None)


#: shape name -> its loader
SHAPES: dict[str, Callable[[torch.device], BackboneShape]] = {
    "tiny": tiny,
    "t5-base": t5_base,
    "tiny-causal": tiny_causal,
    "smollm2-135m": smollm2_135m,
}
