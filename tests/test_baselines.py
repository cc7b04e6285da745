"""MPT- and ATTEMPT-style baselines: formulas on small tensors with hand-computed values, and the bank."""

from __future__ import annotations

import math

import pytest
import torch

from compt import PromptBank, PromptBankConfig, compose
from compt.prompts.baselines import InputAttention, LowRankTaskMatrices


def test_mpt_composition_is_the_shared_prompt_times_the_task_matrix():
    shared = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])  # (1, L=2, d=2)
    matrices = torch.tensor([[[1.0, 0.0], [2.0, 1.0]], [[0.5, 0.5], [0.0, -1.0]]])  # (T=2, 2, 2)
    out = compose("mpt", matrices, shared, None)
    assert out.tolist() == [[[1.0, 0.0], [6.0, 4.0]], [[0.5, 1.0], [0.0, -4.0]]]
    with pytest.raises(ValueError, match="one shared prompt"):
        compose("mpt", matrices, torch.ones(2, 2, 2), None)


def test_low_rank_task_matrices_are_u_v_transpose():
    module = LowRankTaskMatrices(n_tasks=1, length=2, d_model=3, rank=2)
    with torch.no_grad():
        module.u.copy_(torch.tensor([[[1.0, 0.0], [0.0, 2.0]]]))  # (1, L=2, r=2)
        module.v.copy_(torch.tensor([[[1.0, 1.0], [2.0, 0.0], [0.0, 3.0]]]))  # (1, d=3, r=2)
    # W[l, j] = Σ_r u[l, r] v[j, r]
    assert module().tolist() == [[[1.0, 2.0, 0.0], [2.0, 0.0, 6.0]]]
    fresh = LowRankTaskMatrices(n_tasks=3, length=4, d_model=5, rank=2)
    assert torch.allclose(fresh(), torch.ones(3, 4, 5), atol=0.1)  # every task starts from the shared prompt


def test_attempt_composition_hand_computed():
    sources = torch.tensor([[[1.0, 0.0]], [[0.0, 2.0]]])  # (S=2, L=1, d=2)
    private = torch.tensor([[[4.0, 4.0]]])  # (B=1, L=1, d=2)
    weights = torch.tensor([[0.25, 0.25, 0.5]])  # sources, then the task prompt
    # P_t + 0.25·P_0 + 0.25·P_1 + 0.5·P_t = [6, 6] + [0.25, 0] + [0, 0.5]
    assert compose("attempt", private, sources, weights).tolist() == [[[6.25, 6.5]]]


def test_input_attention_hand_computed():
    attention = InputAttention(d_model=2, d_hidden=2, temperature=1.0)
    with torch.no_grad():
        for linear in (attention.down, attention.up):
            linear.weight.copy_(torch.eye(2))
            linear.bias.zero_()
    inputs = torch.tensor([[[1.0, 3.0], [2.0, -1.0], [9.0, 9.0]]])  # the last token is padding
    mask = torch.tensor([[1, 1, 0]])
    candidates = torch.tensor(
        [[[[1.0, 0.0], [0.0, 2.0]], [[3.0, 1.0], [0.0, 0.0]], [[0.0, 5.0], [1.0, 1.0]]]]
    )  # (B=1, K=3, L=2, d=2)
    weights = attention(inputs, mask, candidates, torch.tensor([True, True, True]))
    # maxpool(X) = [2, 3] → SiLU → identity → LayerNorm of 2 values ≈ [-1, 1]
    # keys = maxpool rows: [1, 2], [3, 1], [1, 5] → scores 1, -2, 4
    expected = torch.softmax(torch.tensor([1.0, -2.0, 4.0]), 0)
    assert torch.allclose(weights[0], expected, atol=1e-3)
    dropped = attention(inputs, mask, candidates, torch.tensor([True, False, True]))
    assert dropped[0, 1] == 0
    assert torch.allclose(dropped[0], torch.softmax(torch.tensor([1.0, -math.inf, 4.0]), 0), atol=1e-3)


def _bank(method: str, **kw) -> PromptBank:
    torch.manual_seed(0)
    config = PromptBankConfig(method=method, task_names=["a", "b"], d_model=8, source_length=3, **kw)
    return PromptBank(config)


def test_attempt_bank_mixes_per_example_and_trains_its_attention():
    bank = _bank("attempt", n_sources=2, attempt_hidden=4)
    embeds = torch.randn(3, 5, 8)
    attention_mask = torch.ones(3, 5, dtype=torch.long)
    prompts, prompt_mask = bank.example_prompts(torch.tensor([0, 1, 0]), embeds, attention_mask)
    assert prompts.shape == (3, 3, 8) and prompt_mask is None
    assert not torch.allclose(prompts[0], prompts[2])  # same task, different inputs → different prompts
    prompts.sum().backward()
    groups = bank.parameter_groups()
    assert {id(p) for p in groups["router"]} == {id(p) for p in bank.attention.parameters()}
    assert all(p.grad is not None for g in groups.values() for p in g)
    with pytest.raises(ValueError, match="per example"):
        bank()
    only_src1, _ = bank.example_prompts(torch.tensor([0]), embeds[:1], attention_mask[:1], "src1")
    assert torch.allclose(only_src1[0], bank.sources()[1])  # private dropped, the one kept source weight 1


def test_mpt_bank_groups_and_masks():
    bank = _bank("mpt", n_sources=1, mpt_rank=2)
    groups = bank.parameter_groups()
    assert groups["router"] == [] and len(groups["sources"]) == 5
    assert {id(p) for p in groups["private"]} == {id(bank.private.u), id(bank.private.v)}
    prompts, _ = bank()
    assert torch.allclose(prompts, bank.sources() * bank.private())
    with pytest.raises(ValueError, match="only 'total'"):
        bank("src0")


def test_frozen_sources_take_no_gradient_and_leave_the_groups():
    bank = _bank("ssum", freeze_sources=True)
    prompts, _ = bank()
    prompts.sum().backward()
    assert bank.parameter_groups()["sources"] == []
    assert all(p.grad is None for p in bank.sources.parameters())


def test_bad_combinations_fail_clearly():
    with pytest.raises(ValueError, match="mpt_rank applies to method=mpt only"):
        PromptBankConfig(method="mcat", task_names=["a"], mpt_rank=4)
    with pytest.raises(ValueError, match="attempt_hidden / attempt_temperature apply to method=attempt"):
        PromptBankConfig(method="mpt", task_names=["a"], n_sources=1, attempt_hidden=8)
    with pytest.raises(ValueError, match="n_sources must be 1"):
        PromptBankConfig(method="mpt", task_names=["a"], n_sources=3)
    with pytest.raises(ValueError, match="no source prompts"):
        PromptBankConfig(method="pt", task_names=["a"], freeze_sources=True)


def test_sources_initialised_from_another_bank_and_spot_style_private_init():
    donor = _bank("ssum", n_sources=2)
    receiver = _bank("mcat", n_sources=2)
    receiver.init_sources_from(donor)
    assert torch.equal(receiver.sources(), donor.sources())
    with pytest.raises(ValueError, match="do not fit"):
        _bank("ssum", n_sources=3).init_sources_from(donor)
    shared = _bank("sources_only", n_sources=1, router_learn=False)
    target = _bank("pt")
    target.init_private_from_source(shared)
    assert torch.equal(target()[0][0], shared.sources()[0]) and torch.equal(
        target()[0][1], shared.sources()[0]
    )


@pytest.mark.parametrize(
    ("method", "options", "expected"),
    [
        ("mpt", {"n_sources": 1, "mpt_rank": 2}, {"mpt_rank": 2}),
        (
            "attempt",
            {"n_sources": 2, "attempt_hidden": 4},
            {"attempt_hidden": 4, "attempt_temperature": None},
        ),
        ("ssum", {}, None),
    ],
)
def test_each_baseline_owns_its_options_and_banks_saved_with_them_at_the_top_still_load(
    tmp_path, method, options, expected
):
    import json

    from compt.prompts.bank import CONFIG_FILE

    bank = _bank(method, **options)
    assert bank.config.to_dict()["options"] == expected
    assert not {"mpt_rank", "attempt_hidden", "attempt_temperature"} & set(bank.config.to_dict())
    bank.save(tmp_path)
    meta = json.loads((tmp_path / CONFIG_FILE).read_text())
    old = {key: value for key, value in meta["config"].items() if key != "options"}
    old.update(mpt_rank=1, attempt_hidden=None, attempt_temperature=None)  # as every bank recorded them
    old.update({key: value for key, value in options.items() if key != "n_sources"})
    (tmp_path / CONFIG_FILE).write_text(json.dumps({**meta, "config": old}))
    loaded = PromptBank.load(tmp_path)
    assert loaded.config == bank.config
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), bank.state_dict().values()))
