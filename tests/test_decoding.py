"""Greedy decoding with transformers' repetition penalty (``eval.repetition_penalty``; the authors' evaluation
generated with 2.0: ``attempt/run_seq2seq.py`` c7a19a2 L2611, ``third_party/trainers/seq2seq_trainer.py``
L183–192), for both backbone families, against step-by-step references that apply transformers'
``RepetitionPenaltyLogitsProcessor`` to the ids ``generate`` would hand it."""

from __future__ import annotations

import pytest
import torch
from transformers import RepetitionPenaltyLogitsProcessor

from compt.errors import ConfigError
from compt.evaluation import EvalConfig, Predictor
from compt.models.seq2seq import ComptModel
from compt.prompts import PromptBank, PromptBankConfig
from compt.tasks import get_task
from tests.test_causal import MIXED, example_parts, make_batch, prepared

PENALTY = 2.0
NEW_TOKENS = 6


def test_causal_generation_penalises_the_text_and_answer_ids_as_transformers_does(tiny_causal_backbone):
    """A decoder-only ``generate(input_ids=text)`` penalises every id of the text and of the answer so far."""
    model, bank, tokenizer, batch = prepared(tiny_causal_backbone, "ssum")
    backbone, embed = model.backbone, model.backbone.get_input_embeddings()
    args = batch["input_ids"], batch["attention_mask"], batch["task_ids"]
    penalised = model.generate(*args, max_new_tokens=NEW_TOKENS, repetition_penalty=PENALTY)
    plain = model.generate(*args, max_new_tokens=NEW_TOKENS)
    assert not torch.equal(penalised, plain)  # the tiny model repeats itself: the penalty changes answers
    processor = RepetitionPenaltyLogitsProcessor(PENALTY)
    with torch.no_grad():
        for row in range(len(MIXED)):
            text, prompt, _ = example_parts(batch, row, bank)
            sequence = torch.cat([embed(torch.tensor([text])), prompt[None]], 1)
            tokens: list[int] = []
            while len(tokens) < NEW_TOKENS and tokenizer.eos_token_id not in tokens:  # no cache, no padding
                logits = backbone(inputs_embeds=sequence).logits[:, -1].float()
                tokens.append(int(processor(torch.tensor([text + tokens]), logits).argmax()))
                sequence = torch.cat([sequence, embed(torch.tensor([[tokens[-1]]]))], 1)
            assert penalised[row, : len(tokens)].tolist() == tokens


def test_seq2seq_generation_penalises_the_decoder_ids_as_transformers_does(tiny_backbone):
    """An encoder-decoder's ``generate`` penalises the decoder's ids (its start token included), not the
    encoder's input; compt passes the penalty to it, and the predictor passes ``eval.repetition_penalty``."""
    backbone, tokenizer = tiny_backbone
    config = PromptBankConfig(
        method="ssum",
        task_names=["sst2", "stsb"],
        d_model=backbone.get_input_embeddings().embedding_dim,
        n_sources=3,
        source_length=2,
    )
    bank = PromptBank(config, generator=torch.Generator().manual_seed(0)).eval()
    model = ComptModel(backbone, bank, backbone_dropout=False).eval()
    batch = make_batch(tokenizer, MIXED)
    args = batch["input_ids"], batch["attention_mask"], batch["task_ids"]
    penalised = model.generate(*args, NEW_TOKENS, repetition_penalty=PENALTY)
    assert not torch.equal(penalised, model.generate(*args, NEW_TOKENS))
    processor = RepetitionPenaltyLogitsProcessor(PENALTY)
    with torch.no_grad():
        embeds, attention = model.prompted_inputs(*args)
        encoded = backbone.get_encoder()(inputs_embeds=embeds, attention_mask=attention)
        decoded = torch.full((len(MIXED), 1), backbone.config.decoder_start_token_id)
        for _ in range(NEW_TOKENS):
            logits = backbone(
                encoder_outputs=encoded, attention_mask=attention, decoder_input_ids=decoded
            ).logits[:, -1]
            decoded = torch.cat([decoded, processor(decoded, logits).argmax(-1, keepdim=True)], 1)
    for row in range(len(MIXED)):
        ours = penalised[row].tolist()
        end = ours.index(tokenizer.eos_token_id) + 1 if tokenizer.eos_token_id in ours else len(ours)
        assert ours[:end] == decoded[row, :end].tolist()
    predictor = Predictor([get_task("sst2"), get_task("stsb")], tokenizer, "generate", NEW_TOKENS, PENALTY)
    texts = [t.strip() for t in tokenizer.batch_decode(penalised, skip_special_tokens=True)]
    assert predictor(model, batch).texts == texts


def test_a_penalty_of_zero_or_less_is_refused_by_name():
    with pytest.raises(ConfigError, match="eval.repetition_penalty must be > 0"):
        EvalConfig(repetition_penalty=0.0)
