"""A frozen decoder-only causal LM with a prompt bank in front of it: loss, generation and rank scoring.

Plain PyTorch, the same interface as :class:`compt.models.seq2seq.ComptModel`, so the Lightning module, the predictor,
``compt predict`` and ``compt evaluate`` work with either (:func:`compt.build_model` picks the class).

Layout of one example (the batch format is the seq2seq one: ``input_ids`` = the text, right-padded;
``labels`` = the answer ids ending with EOS, padded with -100; see :mod:`compt.models.tokenization`)::

    position=after  (the paper):  [BOS] text  [prompt]  answer <eos>
    position=before (PEFT):       [prompt]  [BOS] text  answer <eos>

The part before the answer — the *prefix* — is **left-padded**: every row's prefix ends in the same column,
so the answers (training), the first generated token and every rank candidate start in one column for the
whole batch. Prompt rows a mask removes (mcat with dropped sources) are moved into that padding, so a masked
prompt is exactly a shorter one. Position ids count attended positions only (``cumsum(attention) - 1``):
each example sees positions ``0, 1, 2, ...`` whatever its padding.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F
from transformers import PreTrainedModel

from compt.models.backbone import output_cache, prompt_rows, with_cache
from compt.models.candidates import present_candidates, scatter_scores, score_present
from compt.models.seq2seq import ComptModel
from compt.prompts.masks import PromptMask


def prompted_prefix(
    inputs_embeds: Tensor,
    attention_mask: Tensor,
    prompts: Tensor,
    prompt_mask: Tensor | None = None,
    position: str = "after",
) -> tuple[Tensor, Tensor]:
    """Each example's prefix — its text with its prompt before or after it — left-padded.

    Args:
        inputs_embeds: text embeddings ``(B, N, d)``, right-padded.
        attention_mask: ``(B, N)``, 1 on tokens, 0 on padding.
        prompts: ``(B, L, d)``, each example's target prompt.
        prompt_mask: ``(B, L)``, which prompt rows attend (``None`` = all); the others go into the padding.
        position: ``after`` — ``[text, prompt]`` (the paper); ``before`` — ``[prompt, text]``.

    Returns:
        ``(B, N + L, d)`` embeddings and their ``(B, N + L)`` attention mask: padding first, then the
        attended rows in order, so column ``N + L - 1`` holds every row's last attended element.
    """
    if position not in ("after", "before"):
        raise ValueError(f"position={position!r}; choose before or after")
    prompts, prompt_mask = prompt_rows(inputs_embeds, attention_mask, prompts, prompt_mask)
    first_text = position == "after"
    parts = [inputs_embeds, prompts] if first_text else [prompts, inputs_embeds]
    masks = [attention_mask, prompt_mask] if first_text else [prompt_mask, attention_mask]
    combined, keep = torch.cat(parts, 1), torch.cat(masks, 1)  # natural order, holes where keep == 0
    order = torch.argsort((keep != 0).to(torch.int8), dim=1, stable=True)  # holes first, kept rows in order
    embeds = combined.gather(1, order.unsqueeze(-1).expand(-1, -1, combined.shape[-1]))
    return embeds, keep.gather(1, order)


def position_ids(attention_mask: Tensor) -> Tensor:
    """Positions ``(B, N)`` counting attended columns only: ``cumsum(mask) - 1``, 0 on leading padding."""
    return (attention_mask.long().cumsum(-1) - 1).clamp_min(0)


def stop_tokens(backbone: PreTrainedModel) -> tuple[Tensor, int]:
    """The backbone's EOS ids ``(E,)`` (generation config, else model config; may be empty) and the id that
    fills a finished row (pad, else the first EOS, else 0)."""
    eos = _first_set(backbone.generation_config.eos_token_id, backbone.config.eos_token_id)
    eos_list = [] if eos is None else eos if isinstance(eos, list) else [eos]
    pad = _first_set(backbone.generation_config.pad_token_id, backbone.config.pad_token_id)
    return torch.tensor(eos_list, dtype=torch.long), int(_first_set(pad, *eos_list[:1], 0))


def seen_tokens(input_ids: Tensor, attention_mask: Tensor, vocab_size: int) -> Tensor:
    """``(B, V)`` bool: which vocabulary ids each example's attended tokens hold (its padding left out)."""
    ids = input_ids.clamp(max=vocab_size).masked_fill(attention_mask == 0, vocab_size)
    seen = torch.zeros(len(ids), vocab_size + 1, dtype=torch.bool, device=ids.device)
    return seen.scatter_(1, ids, True)[:, :vocab_size]


def penalise_repeats(logits: Tensor, seen: Tensor, penalty: float) -> Tensor:
    """transformers' ``RepetitionPenaltyLogitsProcessor``: the logit ``(B, V)`` of every ``seen`` id is divided by
    ``penalty`` when positive, multiplied by it when negative."""
    return torch.where(seen, torch.where(logits < 0, logits * penalty, logits / penalty), logits)


def _first_set(*values):
    return next((v for v in values if v is not None), None)


class CausalComptModel(ComptModel):
    """``backbone`` (a frozen Hugging Face causal LM) + ``bank`` (trainable).

    Args:
        backbone: a decoder-only LM (``AutoModelForCausalLM``), already frozen.
        bank: the prompt bank; its ``config.position`` decides where prompts go (module docstring).
        backbone_dropout: keep the backbone's dropout active in training.
    """

    family = "causal"

    def prompted_inputs(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        task_ids: Tensor,
        mask: PromptMask | str | None = None,
    ) -> tuple[Tensor, Tensor]:
        """The left-padded prefix ``[prompt] text [prompt]`` of every example: ``(B, P, d)``, ``(B, P)``
        with ``P = N + L``; its position ids are :func:`position_ids` of the mask."""
        embeds, prompts, prompt_mask = self.embed_with_prompts(input_ids, attention_mask, task_ids, mask)
        return prompted_prefix(embeds, attention_mask, prompts, prompt_mask, self.bank.config.position)

    def answer_logits(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        task_ids: Tensor,
        labels: Tensor,
        mask: PromptMask | str | None = None,
    ) -> Tensor:
        """Teacher-forced logits ``(B, M, V)`` over the answer: row ``j`` predicts ``labels[:, j]``.

        One pass over ``prefix + labels[:, :-1]`` (answers right-padded after the common prefix end); the LM
        head runs on the last M positions only.
        """
        prefix, prefix_mask = self.prompted_inputs(input_ids, attention_mask, task_ids, mask)
        answer = labels[:, :-1]  # (B, M-1): the last answer token is predicted, never fed
        answer_embeds = self.backbone.get_input_embeddings()(answer.clamp_min(0)).to(prefix.dtype)
        cache, attention, positions = self._start(
            torch.cat([prefix_mask, (answer != -100).to(prefix_mask.dtype)], 1)
        )
        return self.backbone(
            inputs_embeds=torch.cat([prefix, answer_embeds], 1),
            attention_mask=attention,
            position_ids=positions,
            logits_to_keep=labels.shape[1],
            **cache,
        ).logits

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        task_ids: Tensor,
        labels: Tensor,
        mask: PromptMask | str | None = None,
    ) -> Tensor:
        """Mean token cross-entropy of the answer tokens ``labels`` ``(B, M)`` (-100 = ignored): a scalar.
        The text and the prompt carry no loss."""
        logits = self.answer_logits(input_ids, attention_mask, task_ids, labels, mask)
        return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100)

    def _prefix_step(
        self, input_ids: Tensor, attention_mask: Tensor, task_ids: Tensor, mask: PromptMask | str | None
    ) -> tuple[Tensor, Tensor, Tensor, object]:
        """Run the prefix once: next-token logits ``(B, 1, V)``, its attention ``(B, K + P)`` (K: the bank's
        key/value prefix, :meth:`_start`), the position of its last element ``(B, 1)`` and the KV cache."""
        prefix, prefix_mask = self.prompted_inputs(input_ids, attention_mask, task_ids, mask)
        cache, attention, positions = self._start(prefix_mask)
        out = self.backbone(
            inputs_embeds=prefix,
            attention_mask=attention,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **cache,
        )
        return out.logits, attention, positions[:, -1:], output_cache(out)

    def _start(self, attention: Tensor) -> tuple[dict[str, object], Tensor, Tensor]:
        """How a pass from scratch over ``attention``'s ``N`` columns starts: the backbone keyword of the bank's
        key/value prefix (a prefix adapter's, :mod:`compt.adapters`; else none), the attention mask ``(B, K + N)``
        with the prefix's K attended columns in front, and the N columns' position ids ``(B, N)``, which count
        the prefix's (an unpadded text starts at position K, as in PEFT's forward)."""
        width = attention.shape[1]
        kv = self.bank.kv_prefix(len(attention))
        if kv is None:
            return {}, attention, position_ids(attention)
        attention = torch.cat([attention.new_ones(len(attention), kv.get_seq_length()), attention], 1)
        return with_cache(kv), attention, position_ids(attention)[:, -width:]

    @torch.no_grad()
    def generate(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        task_ids: Tensor,
        max_new_tokens: int = 8,
        mask: PromptMask | str | None = None,
        repetition_penalty: float = 1.0,
    ) -> Tensor:
        """Greedy decoding from the left-padded prefix with the KV cache: the new token ids only,
        ``(B, ≤ max_new_tokens)``; a row stops at EOS and is filled with the pad id after it.

        ``repetition_penalty`` (1.0 = none) penalises, as transformers' ``generate(input_ids=...)`` does for a
        causal LM, every id of the example's text (its padding excepted; the prompt rows have no ids) and of the
        answer so far (:func:`penalise_repeats`, on fp32 logits)."""
        logits, attention, last, cache = self._prefix_step(input_ids, attention_mask, task_ids, mask)
        eos_ids, pad = stop_tokens(self.backbone)
        eos_ids = eos_ids.to(input_ids.device)
        done = torch.zeros(len(input_ids), dtype=torch.bool, device=input_ids.device)
        seen = seen_tokens(input_ids, attention_mask, logits.shape[-1]) if repetition_penalty != 1.0 else None
        rows = torch.arange(len(input_ids), device=input_ids.device)
        tokens: list[Tensor] = []
        for step in range(max_new_tokens):
            scores = logits[:, -1].float()
            if seen is not None:
                scores = penalise_repeats(scores, seen, repetition_penalty)
            token = scores.argmax(-1).masked_fill(done, pad)  # (B,)
            tokens.append(token)
            if seen is not None:
                seen[rows, token] = True
            done |= torch.isin(token, eos_ids)
            if bool(done.all()) or step == max_new_tokens - 1:
                break
            attention = torch.cat([attention, torch.ones_like(attention[:, :1])], 1)
            last = last + 1
            out = self.backbone(
                input_ids=token.unsqueeze(1),
                attention_mask=attention,
                position_ids=last,
                **with_cache(cache),
                use_cache=True,
            )
            logits, cache = out.logits, output_cache(out)
        return torch.stack(tokens, 1)

    @torch.no_grad()
    def score_candidates(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        task_ids: Tensor,
        candidate_labels: Tensor,
        mask: PromptMask | str | None = None,
    ) -> Tensor:
        """Log-likelihood of every candidate answer: the prefix runs once per example; its KV cache is selected
        for the candidates that are present (an example of a 2-label task beside a 26-candidate one costs 2
        rows, not 26), which run as batches of continuations planned by candidate length
        (:func:`~compt.models.candidates.score_present`: a short candidate is not padded to a long one where a
        pass of its own costs less).

        Args:
            candidate_labels: ``(B, C, M)`` token ids of each example's C candidates (EOS-terminated), -100 on
                padding (rows of all -100 are absent candidates).

        Returns:
            ``(B, C)`` summed token log-probabilities; absent candidates get ``-inf``.
        """
        owner, labels = present_candidates(candidate_labels)  # (N,), (N, M')
        first, attention, last, cache = self._prefix_step(input_ids, attention_mask, task_ids, mask)

        def continue_(rows: Tensor, inputs: Tensor, start: int) -> Tensor:  # teacher-forced, from the cache
            examples = owner[rows]
            answer = attention.new_ones(len(rows), start + inputs.shape[1] - 1)  # the answer so far, unpadded
            steps = torch.arange(start, start + inputs.shape[1], device=inputs.device)
            return self.backbone(
                input_ids=inputs,
                attention_mask=torch.cat([attention[examples], answer], 1),
                position_ids=last[examples] + steps,
                **with_cache(cache),
                use_cache=True,
            ).logits

        width = self.backbone.get_input_embeddings().embedding_dim
        scores = score_present(first[:, -1], owner, labels, cache, continue_, width)
        return scatter_scores(scores, candidate_labels)


__all__ = [
    "CausalComptModel",
    "penalise_repeats",
    "position_ids",
    "prompted_prefix",
    "seen_tokens",
    "stop_tokens",
]
