"""The prompt bank on the tiny backbone: gradients, groups, placement, save/load, errors."""

from __future__ import annotations

import pytest
import torch

from compt import (
    BackboneNotFoundError,
    ComptModel,
    PromptBank,
    PromptBankConfig,
    insert_prompts,
    load_backbone,
)
from compt.prompts.bank import CONFIG_FILE, WEIGHTS_FILE

ENC = ["w1", "b1", "w2", "b2"]


def make_bank(method: str, d_model: int = 64, vocab_embeddings=None, **kw) -> PromptBank:
    torch.manual_seed(0)
    config = PromptBankConfig(
        method=method, task_names=["rte", "sst2", "stsb"], d_model=d_model, n_sources=3, source_length=4, **kw
    )
    return PromptBank(config, vocab_embeddings=vocab_embeddings)


def batch(tokenizer):
    texts = [
        "rte: sentence1: a cat sentence2: a dog",
        "sst2: sentence: fun",
        "rte: sentence1: x sentence2: y",
    ]
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    labels = tokenizer(
        ["entailment", "positive", "not_entailment"], padding=True, return_tensors="pt"
    ).input_ids
    labels[labels == tokenizer.pad_token_id] = -100
    return enc.input_ids, enc.attention_mask, torch.tensor([0, 1, 0]), labels


@pytest.mark.parametrize("method", ["pt", "ssum", "msum", "mcat", "sources_only"])
def test_one_backward_reaches_exactly_the_bank(tiny_backbone, method):
    backbone, tokenizer = tiny_backbone
    bank = make_bank(method, vocab_embeddings=backbone.get_input_embeddings().weight)
    model = ComptModel(backbone, bank).train()
    bank.router is not None and setattr(bank.router, "temperature", 1.0)
    loss = model(*batch(tokenizer))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is None and not p.requires_grad for p in backbone.parameters())
    for name, p in bank.named_parameters():
        assert p.grad is not None, name
    # tasks present in the batch (0, 1) get gradient on their private rows; task 2 (stsb) does not
    if bank.private is not None:
        grads = bank.private.embedding.grad.abs().sum((1, 2))
        assert grads[0] > 0 and grads[1] > 0 and grads[2] == 0
    groups = bank.parameter_groups()
    ids = [id(p) for g in groups.values() for p in g]
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert sorted(ids) == sorted(id(p) for p in trainable)  # the groups partition the trainable parameters
    assert len(ids) == len(set(ids))


def test_parameter_groups_hold_the_right_tensors():
    bank = make_bank("ssum")
    groups = {k: {id(p) for p in v} for k, v in bank.parameter_groups().items()}
    assert groups["router"] == {id(bank.router.logits)}
    assert groups["sources"] == {id(p) for p in bank.sources.parameters()}
    assert groups["private"] == {id(p) for p in bank.private.parameters()}
    assert len(groups["sources"]) == 5 and len(groups["private"]) == 5
    assert make_bank("pt").parameter_groups()["router"] == []


def test_shapes_per_method():
    assert make_bank("ssum")()[0].shape == (3, 4, 64)
    assert make_bank("mcat")()[0].shape == (3, 12, 64)  # S·L_s
    assert make_bank("mcat").private.embedding.shape == (3, 12, 64)
    assert make_bank("pt", private_length=7)()[0].shape == (3, 7, 64)


def _marked_embeds():
    """Two examples, lengths 4 and 2 (right-padded to 4), rows tagged by their position."""
    embeds = torch.arange(1, 9, dtype=torch.float).reshape(2, 4, 1)  # tokens 1..4 / 5..8
    attention = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    prompts = -torch.arange(1, 5, dtype=torch.float).reshape(2, 2, 1) * 10  # -10,-20 / -30,-40
    return embeds, attention, prompts


def test_after_placement_puts_prompt_before_the_final_eos():
    embeds, attention, prompts = _marked_embeds()
    out, mask = insert_prompts(embeds, attention, prompts, position="after")
    assert out[0, :, 0].tolist() == [1, 2, 3, -10, -20, 4]  # text, prompt, </s>
    assert out[1, :4, 0].tolist() == [5, -30, -40, 6]
    assert mask.tolist() == [[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]]


def test_before_placement_and_prompt_mask():
    embeds, attention, prompts = _marked_embeds()
    out, mask = insert_prompts(embeds, attention, prompts, torch.tensor([[1, 0], [1, 1]]), position="before")
    assert out[0, :, 0].tolist() == [-10, -20, 1, 2, 3, 4]
    assert out[1, :4, 0].tolist() == [-30, -40, 5, 6]
    assert mask.tolist() == [[1, 0, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]]


def test_mixed_task_batch_gets_each_tasks_prompt(tiny_backbone):
    backbone, tokenizer = tiny_backbone
    bank = make_bank("ssum").eval()
    model = ComptModel(backbone, bank)
    input_ids, attention, task_ids, _ = batch(tokenizer)
    embeds, mask = model.prompted_inputs(input_ids, attention, task_ids)
    prompts, _ = bank()
    for row, task in enumerate(task_ids.tolist()):
        eos = int(attention[row].sum()) - 1
        assert torch.equal(embeds[row, eos : eos + 4], prompts[task])
        assert embeds.shape[1] == input_ids.shape[1] + 4


def test_mcat_mask_removes_dropped_source_tokens_from_attention(tiny_backbone):
    backbone, tokenizer = tiny_backbone
    model = ComptModel(backbone, make_bank("mcat", position="before").eval())
    input_ids, attention, task_ids, _ = batch(tokenizer)
    _, mask = model.prompted_inputs(input_ids, attention, task_ids, mask="src2")
    assert mask[:, :12].tolist() == [[0] * 8 + [1] * 4] * 3


def test_save_load_round_trip_is_bit_exact_with_exact_keys(tmp_path):
    bank = make_bank("ssum", backbone="tiny").eval()
    bank.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]
    from safetensors.torch import load_file

    keys = sorted(load_file(tmp_path / WEIGHTS_FILE))
    expected = sorted(
        ["router.logits", "sources.embedding", "private.embedding"]
        + [f"{part}.encoder.{w}" for part in ("sources", "private") for w in ENC]
    )
    assert keys == expected
    loaded = PromptBank.load(tmp_path).eval()
    assert loaded.config == bank.config
    for mask in ("total", "src0", "private"):
        assert torch.equal(loaded(mask)[0], bank(mask)[0])


def test_pt_bank_saves_only_private_keys(tmp_path):
    make_bank("pt").save(tmp_path)
    from safetensors.torch import load_file

    assert sorted(load_file(tmp_path / WEIGHTS_FILE)) == sorted(
        ["private.embedding"] + [f"private.encoder.{w}" for w in ENC]
    )


def test_loading_into_a_different_hidden_size_fails_clearly(tmp_path, tiny_backbone):
    make_bank("ssum", d_model=32).save(tmp_path)
    with pytest.raises(ValueError, match="hidden size d=32.*d=64"):
        PromptBank.load(tmp_path, d_model=64)
    with pytest.raises(ValueError, match="does not match the backbone"):
        ComptModel(tiny_backbone[0], PromptBank.load(tmp_path))


def test_private_init_from_vocabulary():
    vocab = torch.randn(50, 64)
    bank = make_bank("ssum", vocab_embeddings=vocab, private_init="vocab_first_rows")
    assert torch.equal(bank.private.embedding[1], vocab[:4])
    bank = make_bank("ssum", vocab_embeddings=vocab)
    rows = bank.private.embedding.reshape(-1, 64)
    assert all(any(torch.equal(r, v) for v in vocab) for r in rows)
    assert bank.sources.embedding.abs().max() <= 0.5


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="method='sum'"):
        PromptBankConfig(method="sum", task_names=["a"])
    with pytest.raises(ValueError, match="private_length == 30"):
        PromptBankConfig(method="mcat", task_names=["a"], source_length=10, private_length=20)
    with pytest.raises(ValueError, match="unknown prompt bank option"):
        PromptBankConfig.from_dict({"method": "ssum", "task_names": ["a"], "lenght": 3})


def test_missing_backbone_fails_with_one_clear_message(tmp_path):
    with pytest.raises(BackboneNotFoundError, match=r"'no-such-org/t5-nothing'.*model.name=tiny"):
        load_backbone("no-such-org/t5-nothing")
    with pytest.raises(BackboneNotFoundError, match="`hf download"):
        load_backbone(str(tmp_path / "empty"))


def test_backbone_dropout_option(tiny_backbone):
    backbone, _ = tiny_backbone
    model = ComptModel(backbone, make_bank("pt"), backbone_dropout=False).train()
    dropouts = [m for m in backbone.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and all(m.p == 0.0 for m in dropouts)
    ComptModel(backbone, make_bank("pt"), backbone_dropout=True)
    assert all(m.p == 0.1 for m in dropouts)
    assert model.training


@pytest.mark.parametrize("dropout", [False, True])
def test_without_backbone_dropout_a_training_forward_is_deterministic(tiny_backbone, dropout):
    """Switched off, no dropout is left anywhere in the backbone, T5's attention-weight dropout included."""
    backbone, tokenizer = tiny_backbone
    model = ComptModel(backbone, make_bank("pt"), backbone_dropout=dropout).train()
    model.bank.eval()  # the prompt encoder's own dropout is not the backbone's
    input_ids, attention, task_ids, labels = batch(tokenizer)
    losses = [model(input_ids, attention, task_ids, labels).item() for _ in range(2)]
    assert (losses[0] == losses[1]) is not dropout
    ComptModel(backbone, make_bank("pt"), backbone_dropout=True).eval()  # the shared backbone as it was


@pytest.mark.parametrize("pass_cost", [0, 10**6])  # a pass per candidate length / one padded pass
def test_rank_scores_match_teacher_forced_loss(tiny_backbone, pass_cost, monkeypatch):
    """Every row scores answers of 2, 3, 4 and 8 tokens and an absent candidate; each score is the answer's
    teacher-forced log-likelihood on that row alone."""
    monkeypatch.setattr("compt.models.candidates.PASS_COST_POSITIONS", pass_cost)
    backbone, tokenizer = tiny_backbone
    model = ComptModel(backbone, make_bank("ssum")).eval()
    input_ids, attention, task_ids, _ = batch(tokenizer)
    labels = tokenizer(
        ["positive", "3.8", "a cat", "the dog is fun"], padding=True, return_tensors="pt"
    ).input_ids
    labels[labels == tokenizer.pad_token_id] = -100
    lengths = (labels != -100).sum(-1).tolist()
    assert lengths == [2, 3, 4, 8]
    absent = torch.full_like(labels[:1], -100)
    candidates = torch.cat([labels, absent]).expand(3, -1, -1)  # (B, 5, M)
    scores = model.score_candidates(input_ids, attention, task_ids, candidates)
    assert scores[:, 4].tolist() == [float("-inf")] * 3
    for row in range(3):
        for answer in range(4):
            loss = model(
                input_ids[row : row + 1],
                attention[row : row + 1],
                task_ids[row : row + 1],
                labels[answer : answer + 1],
            )
            expected = -loss.item() * lengths[answer]
            assert scores[row, answer].item() == pytest.approx(expected, rel=1e-4)


def test_rank_scoring_plans_a_pass_per_length_only_where_the_padding_it_saves_costs_more():
    from compt.models.passes import PASS_COST_POSITIONS as PASS
    from compt.models.passes import plan_passes

    assert PASS == 128
    assert plan_passes([1, 1]) == []
    assert plan_passes([2] * 5 + [3] * 5) == [3]  # 10 positions saved by a second pass: one padded pass
    # stsb's values: 25 of 3 tokens and "5.0" of 4. One row: pad "5.0"'s companions (25 < 128)...
    assert plan_passes([3] * 25 + [4]) == [4]
    # ... 64 rows: 1,600 positions saved, so "5.0" gets a pass of its own
    assert plan_passes([3] * 1600 + [4] * 64) == [3, 4]
    # 300 label words (2 tokens) beside 100 values of 3 tokens: a pass of their own saves the words 300 positions
    assert plan_passes([2] * 300 + [3] * 100) == [2, 3]
    assert plan_passes([2] * 100 + [3] * 300) == [3]  # 100 positions saved: less than a pass
    assert plan_passes([2] * 300 + [3] * 100, cost=float("inf")) == [3]  # off the CPU: one pass


def test_a_pass_costs_less_on_a_wider_backbone_and_is_not_planned_off_the_cpu():
    from compt.models.passes import pass_cost, plan_rows

    cpu = torch.device("cpu")
    assert pass_cost(128, 64, cpu) == 128 and pass_cost(128, 512, cpu) == 2
    assert pass_cost(128, 64, torch.device("meta")) == float("inf")
    # the encoder: 8 short rows beside 24 long ones share a pass on the tiny T5, not on a wide backbone
    lengths = [40] * 8 + [59] * 24
    assert plan_rows(lengths, cost=400) == [32]
    assert plan_rows(lengths, cost=6) == [8, 32]
    assert plan_rows([50] * 64, cost=400) == [32, 64]  # at most 32 rows a pass
    assert plan_rows([], cost=400) == []


def test_on_cpu_a_large_batch_is_encoded_in_passes_by_length_as_one_pass_encodes_it(tiny_backbone):
    """More than 32 rows run in passes of similar lengths; every attended position gets what one pass gives."""
    from compt.models.passes import CPU_ENCODER_ROWS

    backbone, tokenizer = tiny_backbone
    model = ComptModel(backbone, make_bank("ssum")).eval()
    words = ["a cat", "the dog is fun and the cat is not", "x", "a dog and a cat sat on the mat today"]
    texts = [
        f"rte: sentence1: {words[i % 4]} sentence2: {words[i // 4 % 4]}" for i in range(CPU_ENCODER_ROWS + 8)
    ]
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        embeds, attention = model.prompted_inputs(
            enc.input_ids, enc.attention_mask, torch.zeros(len(texts), dtype=torch.long)
        )
        one_pass = backbone.get_encoder()(inputs_embeds=embeds, attention_mask=attention).last_hidden_state
        in_passes = model.encode(embeds, attention)
    attended = attention.bool()
    assert len(set(attention.sum(1).tolist())) > 4  # lengths differ: the passes cut padding
    torch.testing.assert_close(in_passes[attended], one_pass[attended], atol=1e-5, rtol=0)


def test_a_generator_makes_the_whole_bank_reproducible_whatever_the_global_random_state():
    config = PromptBankConfig(method="ssum", task_names=["a", "b"], d_model=4, n_sources=3, source_length=2)
    vocab = torch.randn(50, 4)
    banks = []
    for global_seed in (0, 1):
        torch.manual_seed(global_seed)
        banks.append(PromptBank(config, vocab, torch.Generator().manual_seed(7)).state_dict())
    assert banks[0].keys() == banks[1].keys() and "sources.encoder.w1" in banks[0]
    assert all(torch.equal(banks[0][key], banks[1][key]) for key in banks[0])  # encoders included
