"""The backbone shapes measured, and what depends on the backbone's family.

A shape is a frozen backbone (and a tokenizer when one fits its vocabulary). :class:`Seq2SeqShape` holds the
parts that depend on the encoder-decoder family: a synthetic batch, the floor step (the frozen backbone alone
on an ``inputs_embeds`` of the prompted length), the FLOPs of a train step and the encoder pass that every
evaluation shares. Another family (e.g. a causal LM) adds a class with the same methods and an entry in
:data:`SHAPES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase, T5Config, T5ForConditionalGeneration

from compt.backbone import freeze, load_backbone
from compt.model import ComptModel
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

FLOPS_FORMULA = (
    "per step: 4*B*(N_enc*T_enc + N_dec*T_dec + V*d*T_dec); N_enc/N_dec = non-embedding parameters of "
    "the encoder/decoder stack, T_enc = text + prompt tokens, T_dec = target tokens, V*d = tied LM head; "
    "4 = forward 2N + backward w.r.t. activations 2N (frozen weights: no weight gradients)"
)


@dataclass
class Seq2SeqShape:
    """A frozen encoder-decoder backbone (T5 family) on the benchmark's device."""

    name: str
    backbone: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase | None
    #: PEFT's ``TaskType`` for prompt tuning on this family
    peft_task_type: str = "SEQ_2_SEQ_LM"

    @property
    def d_model(self) -> int:
        return self.backbone.get_input_embeddings().embedding_dim

    def make_batch(
        self, batch: int, n_tokens: int, target_len: int, n_tasks: int, device: torch.device, seed: int = 0
    ) -> dict[str, Tensor]:
        """A full-length (no padding) encoder batch ending in </s>, targets of ``target_len`` tokens, tasks
        mixed (task id = row mod ``n_tasks``)."""
        vocab, eos = self.backbone.config.vocab_size, self.backbone.config.eos_token_id
        g = torch.Generator().manual_seed(seed)
        input_ids = torch.randint(3, vocab, (batch, n_tokens), generator=g)
        input_ids[:, -1] = eos
        labels = torch.randint(3, vocab, (batch, target_len), generator=g)
        labels[:, -1] = eos
        return {
            "input_ids": input_ids.to(device),
            "attention_mask": torch.ones(batch, n_tokens, dtype=torch.long, device=device),
            "task_ids": (torch.arange(batch) % n_tasks).to(device),
            "labels": labels.to(device),
        }

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


def tiny(device: torch.device) -> Seq2SeqShape:
    """The committed tiny T5 and its tokenizer."""
    backbone, tokenizer = load_backbone("tiny")
    return Seq2SeqShape("tiny", backbone.to(device), tokenizer)


def t5_base(device: torch.device) -> Seq2SeqShape:
    """t5-base's architecture with random weights (nothing downloaded); no tokenizer fits it offline."""
    torch.manual_seed(0)
    backbone = freeze(T5ForConditionalGeneration(T5Config(**T5_BASE)))
    return Seq2SeqShape("t5-base", backbone.to(device), None)


#: shape name -> its loader
SHAPES: dict[str, Callable[[torch.device], Seq2SeqShape]] = {"tiny": tiny, "t5-base": t5_base}
