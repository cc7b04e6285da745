"""A frozen seq2seq backbone with a prompt bank in front of it: loss, generation and rank scoring.

Plain PyTorch: the Lightning module, the evaluator, the benchmarks and ``compt predict`` all use this.
:func:`compt.models.family.build_model` picks this class or its decoder-only counterpart (:mod:`compt.models.causal`)
for a backbone.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput

from compt.models.backbone import backbone_family, insert_prompts, output_cache, set_dropout, with_cache
from compt.models.candidates import present_candidates, scatter_scores, score_present
from compt.models.passes import ENCODER_PASS_COST_TOKENS, pass_cost, plan_rows
from compt.prompts.bank import PromptBank
from compt.prompts.masks import PromptMask


class ComptModel(nn.Module):
    """``backbone`` (frozen) + ``bank`` (trainable).

    Args:
        backbone: a Hugging Face seq2seq LM (T5 family), already frozen.
        bank: the prompt bank; its ``config.position`` decides where prompts go.
        backbone_dropout: keep the backbone's dropout active in training (the authors' code did).
    """

    #: the backbone family this class serves (:func:`compt.models.backbone.backbone_family`)
    family = "seq2seq"

    def __init__(self, backbone: PreTrainedModel, bank: PromptBank, backbone_dropout: bool = True) -> None:
        super().__init__()
        d_model = backbone.get_input_embeddings().embedding_dim
        if d_model != bank.config.d_model:
            raise ValueError(
                f"prompt bank d_model={bank.config.d_model} does not match the backbone's hidden size {d_model}"
            )
        family = backbone_family(backbone)
        if family != self.family:
            raise ValueError(
                f"{type(self).__name__} needs a {self.family} backbone, this one is {family}: "
                "use compt.build_model(backbone, bank), which picks the class"
            )
        if bank.config.backbone_family not in (None, family):
            raise ValueError(
                f"this prompt bank was trained on a {bank.config.backbone_family} backbone "
                f"({bank.config.backbone!r}); this backbone is {family}"
            )
        bank.config.backbone_family = family  # recorded in the saved bank (export needs it)
        self.backbone = backbone
        self.bank = bank
        set_dropout(backbone, backbone_dropout)

    def kv_prefix(self, batch_size: int) -> dict[str, object]:
        """The keyword that starts the backbone's (decoder's) attention from the bank's key/value prefix, a
        prefix adapter's (:mod:`compt.adapters`; PEFT puts it in an encoder-decoder's decoder), or nothing."""
        prefix = self.bank.kv_prefix(batch_size)
        return {} if prefix is None else with_cache(prefix)

    def prompted_inputs(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        task_ids: Tensor,
        mask: PromptMask | str | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Encoder inputs with each example's target prompt inserted: ``(B, N+L, d)``, ``(B, N+L)``."""
        embeds, prompts, prompt_mask = self.embed_with_prompts(input_ids, attention_mask, task_ids, mask)
        return insert_prompts(embeds, attention_mask, prompts, prompt_mask, self.bank.config.position)

    def embed_with_prompts(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        task_ids: Tensor,
        mask: PromptMask | str | None = None,
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """The text's token embeddings ``(B, N, d)``, each example's target prompt ``(B, L, d)`` and the
        prompt's attention mask ``(B, L)`` (None = every row attends)."""
        embeds = self.backbone.get_input_embeddings()(input_ids)  # (B, N, d)
        prompts, prompt_mask = self.bank.example_prompts(task_ids, embeds, attention_mask, mask)  # (B, L, d)
        return embeds, prompts, prompt_mask

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        task_ids: Tensor,
        labels: Tensor,
        mask: PromptMask | str | None = None,
    ) -> Tensor:
        """Mean token cross-entropy of ``labels`` ``(B, M)`` (-100 = ignored): a scalar, computed in fp32 whatever
        the backbone's dtype (the decoder is fed ``labels`` shifted right, as the backbone's own loss does)."""
        embeds, attention = self.prompted_inputs(input_ids, attention_mask, task_ids, mask)
        logits = self.backbone(
            inputs_embeds=embeds,
            attention_mask=attention,
            decoder_input_ids=self.backbone.prepare_decoder_input_ids_from_labels(labels=labels),
            **self.kv_prefix(len(labels)),
        ).logits  # (B, M, V)
        return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100)

    def encode(self, embeds: Tensor, attention: Tensor) -> Tensor:
        """The encoder's output ``(B, N, d)`` for the prompted inputs ``embeds`` ``(B, N, d)`` under ``attention``
        ``(B, N)``. On CPU the rows go, sorted by length, in the passes :func:`~compt.models.passes.plan_rows`
        plans (each cut to its longest row: a padded position costs what a real one does, and at most 32 rows,
        whose attention stays in the CPU's cache); elsewhere in one. Every attended position gets what one pass
        gives; masked ones mean nothing (zeros where a pass was cut)."""
        encoder = self.backbone.get_encoder()
        cost = pass_cost(ENCODER_PASS_COST_TOKENS, embeds.shape[-1], embeds.device)  # infinite off the CPU
        if math.isinf(cost):
            return encoder(inputs_embeds=embeds, attention_mask=attention).last_hidden_state
        lengths = attention.sum(1)
        by_length = lengths.argsort()
        ends = plan_rows(lengths[by_length].tolist(), cost)
        if len(ends) == 1:
            return encoder(inputs_embeds=embeds, attention_mask=attention).last_hidden_state
        hidden = embeds.new_zeros(embeds.shape)
        for begin, end in zip([0, *ends], ends):
            rows = by_length[begin:end]
            width = int(attention[rows].any(0).nonzero().max()) + 1  # the columns any of them attends
            passed = encoder(inputs_embeds=embeds[rows, :width], attention_mask=attention[rows, :width])
            hidden[rows, :width] = passed.last_hidden_state
        return hidden

    @torch.no_grad()
    def generate(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        task_ids: Tensor,
        max_new_tokens: int,
        mask: PromptMask | str | None = None,
        repetition_penalty: float = 1.0,
    ) -> Tensor:
        """Greedy decoding (the paper's evaluation): token ids ``(B, ≤ max_new_tokens + 1)``.

        ``repetition_penalty``: transformers' own (the decoder's tokens so far, its start token included, are
        penalised; the encoder's input is not); 1.0 = none."""
        embeds, attention = self.prompted_inputs(input_ids, attention_mask, task_ids, mask)
        return self.backbone.generate(
            inputs_embeds=embeds,
            attention_mask=attention,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            repetition_penalty=repetition_penalty,
            **self.kv_prefix(len(input_ids)),
        )

    @torch.no_grad()
    def score_candidates(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        task_ids: Tensor,
        candidate_labels: Tensor,
        mask: PromptMask | str | None = None,
    ) -> Tensor:
        """Log-likelihood of every candidate target: one encoder pass (:meth:`encode`), one decoder step per
        example (shared by its candidates, with the cross-attention keys/values) and batched decoder passes over
        the candidates that are present (an example of a 2-label task beside a 26-candidate one costs 2 decoder
        rows, not 26), planned by candidate length (:func:`~compt.models.candidates.score_present`: a short
        candidate is not padded to a long one where a pass of its own costs less).

        Args:
            candidate_labels: ``(B, C, M)`` token ids of each example's C candidates, -100 on padding
                (rows of all -100 are absent candidates).

        Returns:
            ``(B, C)`` summed token log-probabilities; absent candidates get ``-inf``.
        """
        owner, labels = present_candidates(candidate_labels)  # (N,), (N, M')
        embeds, attention = self.prompted_inputs(input_ids, attention_mask, task_ids, mask)
        hidden = self.encode(embeds, attention)
        config = self.backbone.config
        # The first target token's distribution is the same for all candidates of an example, so one
        # decoder step per example; its cache holds the cross-attention keys/values over the encoder output (the
        # costly part: 2·d² per encoder position and layer), computed once per example instead of per candidate.
        decoder_start = torch.full(
            (len(hidden), 1), config.decoder_start_token_id, dtype=labels.dtype, device=labels.device
        )
        first = self.backbone(
            encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
            attention_mask=attention,
            decoder_input_ids=decoder_start,
            use_cache=True,
            **self.kv_prefix(len(hidden)),
        )
        cache = output_cache(first)

        def continue_(rows: Tensor, inputs: Tensor, start: int) -> Tensor:  # teacher-forced, from the cache
            return self.backbone(
                encoder_outputs=BaseModelOutput(last_hidden_state=shape_only(hidden, len(rows))),
                attention_mask=attention[owner[rows]],
                decoder_input_ids=inputs,
                **with_cache(cache),
                use_cache=True,
            ).logits

        scores = score_present(first.logits[:, 0], owner, labels, cache, continue_, hidden.shape[-1])
        return scatter_scores(scores, candidate_labels)


def shape_only(hidden: Tensor, rows: int) -> Tensor:
    """Encoder states that a decoder pass with a filled cross-attention cache takes for their shape only
    (transformers builds the cross-attention mask from them; the keys and values come from the cache): a
    ``(rows, N, d)`` zero-stride view of zeros rather than ``rows`` copies of ``hidden`` ``(B, N, d)``."""
    return hidden.new_zeros(()).expand(rows, *hidden.shape[1:])
