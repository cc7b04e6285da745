"""compose(), the router, masks: exact values on small tensors."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import RelaxedBernoulli

from compt import PromptBank, PromptBankConfig, RouterSchedule, compose
from compt.prompts.router import Router, compat_initial_temperature, normalise_sample

T, S, L, D = 2, 3, 2, 2


@pytest.fixture
def tensors():
    private = torch.arange(T * L * D, dtype=torch.float).reshape(T, L, D) + 1  # (T, L, D)
    sources = torch.tensor(
        [[[1.0, 0.0], [0.0, 1.0]], [[2.0, 2.0], [2.0, 2.0]], [[0.0, -1.0], [3.0, 0.0]]]
    )  # (S, L, D)
    weights = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.25, 0.75]])  # (T, S)
    return private, sources, weights


def test_pt_is_the_private_prompt(tensors):
    private, sources, weights = tensors
    assert torch.equal(compose("pt", private, None, None), private)


def test_ssum_msum_sources_only_hand_computed(tensors):
    private, sources, weights = tensors
    mix0 = torch.tensor([[1.5, 1.0], [1.0, 1.5]])  # 0.5*P0 + 0.5*P1
    mix1 = torch.tensor([[0.5, -0.25], [2.75, 0.5]])  # 0.25*P1 + 0.75*P2
    mix = torch.stack([mix0, mix1])
    assert torch.allclose(compose("sources_only", None, sources, weights), mix)
    assert torch.allclose(compose("ssum", private, sources, weights), private + mix)
    expected_msum = torch.tensor([[[1.5, 2.0], [3.0, 6.0]], [[2.5, -1.5], [19.25, 4.0]]])
    assert torch.allclose(compose("msum", private, sources, weights), expected_msum)


def test_mcat_concatenates_weighted_sources_along_length(tensors):
    _, sources, weights = tensors
    private = torch.full((T, S * L, D), 2.0)
    out = compose("mcat", private, sources, weights)
    assert out.shape == (T, S * L, D)
    # task 1: rows 0-1 = 2*0*P0, rows 2-3 = 2*0.25*P1, rows 4-5 = 2*0.75*P2
    assert torch.allclose(out[1, 0:2], torch.zeros(2, D))
    assert torch.allclose(out[1, 2:4], torch.full((2, D), 1.0))
    assert torch.allclose(out[1, 4:6], torch.tensor([[0.0, -1.5], [4.5, 0.0]]))
    assert torch.allclose(out[0, 0:2], sources[0] * 1.0)


def test_compose_rejects_unknown_method_and_missing_operands(tensors):
    private, sources, weights = tensors
    with pytest.raises(ValueError, match="unknown method"):
        compose("sum", private, sources, weights)
    with pytest.raises(ValueError, match="needs private"):
        compose("ssum", None, sources, weights)


def test_router_eval_weights_are_softmax_of_logits():
    router = Router(2, 3)
    with torch.no_grad():
        router.logits.copy_(torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, -1.0]]))
    router.eval()
    assert torch.allclose(router(), torch.softmax(router.logits, -1))


def test_router_training_samples_are_reparameterised():
    torch.manual_seed(0)
    router = Router(2, 3).train()
    router.temperature = 1.0
    first, second = router(), router()
    assert not torch.allclose(first, second)  # sampled
    assert torch.allclose(first.sum(-1), torch.ones(2))
    (first[:, 0] * torch.tensor([1.0, 2.0])).sum().backward()
    assert router.logits.grad is not None and router.logits.grad.abs().sum() > 0


def test_router_sum_compat_normalises_by_the_sum():
    torch.manual_seed(0)
    router = Router(1, 3, train_norm="sum_compat").train()
    weights = router()
    assert torch.allclose(weights.sum(-1), torch.ones(1))
    assert (weights > 0).all()


def test_sum_compat_is_the_softmax_of_the_sum_normalised_sample():
    """The authors' code: softmax(z / Σz + 1e-8) — not z / Σz (issue 12's example sample)."""
    z = torch.tensor([[0.999, 1e-6, 0.001]])  # z / Σz ≈ [0.999, 0, 0.001]
    expected = torch.softmax(z / z.sum(-1, keepdim=True) + 1e-8, -1)
    assert torch.allclose(normalise_sample(z, "sum_compat"), expected)
    assert torch.allclose(expected, torch.tensor([[0.576, 0.212, 0.212]]), atol=1e-3)
    assert torch.allclose(normalise_sample(z, "softmax"), torch.softmax(z, -1))
    # the router's training output is exactly that of its own Relaxed-Bernoulli sample
    router = Router(2, 3, train_norm="sum_compat").train()
    router.temperature = 0.7
    with torch.no_grad():
        router.logits.copy_(torch.tensor([[1.0, -1.0, 0.5], [0.0, 2.0, -2.0]]))
    torch.manual_seed(3)
    weights = router()
    torch.manual_seed(3)
    sample = RelaxedBernoulli(torch.tensor(0.7), logits=router.logits).rsample()
    assert torch.allclose(weights, normalise_sample(sample, "sum_compat"))


def test_per_example_samples_differ_within_a_task_in_training_and_agree_in_evaluation():
    torch.manual_seed(0)
    config = PromptBankConfig(method="ssum", task_names=["a", "b"], d_model=4, n_sources=3, source_length=2)
    bank = PromptBank(config).train()
    bank.router.temperature = 1.0
    task_ids = torch.tensor([0, 0, 1])
    weights = bank.router_weights(task_ids=task_ids)  # (B, S): one sample per example
    assert weights.shape == (3, 3) and not torch.allclose(weights[0], weights[1])
    embeds, attention = torch.zeros(3, 5, 4), torch.ones(3, 5, dtype=torch.long)
    prompts, _ = bank.example_prompts(task_ids, embeds, attention)
    assert not torch.allclose(prompts[0], prompts[1])  # two rows of task a, two compositions in one step
    per_task = PromptBank(PromptBankConfig(**{**config.to_dict(), "router_sample": "per_task"})).train()
    per_task.load_state_dict(bank.state_dict())
    per_task.router.temperature = 1.0
    shared, _ = per_task.example_prompts(task_ids, embeds, attention)
    assert torch.allclose(shared[0], shared[1])  # per_task: one sample shared by the task's rows
    bank.eval()
    evaluated, _ = bank.example_prompts(task_ids, embeds, attention)
    assert torch.allclose(evaluated[0], evaluated[1])
    assert torch.allclose(evaluated, bank()[0][task_ids])  # evaluation: softmax(W[t]), per task


def test_constant_router_gives_one_over_s_in_train_and_eval():
    router = Router(2, 4, learn=False)
    assert list(router.parameters()) == []
    for mode in (True, False):
        router.train(mode)
        assert torch.equal(router(), torch.full((2, 4), 0.25))


def test_linear_temperature_schedule():
    temperature_at = RouterSchedule().temperature
    assert temperature_at(0, 100) == 5.0
    assert temperature_at(100, 100) == pytest.approx(1e-3)
    assert temperature_at(50, 100) == pytest.approx((5.0 + 1e-3) / 2)
    assert temperature_at(10, 0) == pytest.approx(1e-3)


def test_step_compat_temperature_schedule():
    assert compat_initial_temperature(8) == 5.0
    assert compat_initial_temperature(16) == 3.0
    assert compat_initial_temperature(32) == 1.0
    temperature_at = RouterSchedule(anneal="step_compat", k=16).temperature  # τ0 = 3
    assert temperature_at(10, 100) == pytest.approx(2.8)
    assert temperature_at(1000, 100) == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="anneal"):
        RouterSchedule(anneal="cosine").temperature(1, 2)


def _bank(method: str, **kw) -> PromptBank:
    torch.manual_seed(0)
    config = PromptBankConfig(
        method=method, task_names=["a", "b"], d_model=4, n_sources=3, source_length=2, **kw
    )
    return PromptBank(config).eval()


@pytest.mark.parametrize("method", ["ssum", "msum", "mcat"])
def test_masks_give_the_expected_target_prompts(method):
    bank = _bank(method)
    with torch.no_grad():
        bank.router.logits.copy_(torch.tensor([[0.0, 1.0, 2.0], [2.0, 0.0, 1.0]]))
    private, sources = bank.private(), bank.sources()
    weights = torch.softmax(bank.router.logits, -1)
    total, total_mask = bank("total")
    assert total_mask is None
    assert torch.allclose(total, compose(method, private, sources, weights))

    only_private, _ = bank("private")
    assert torch.allclose(only_private, private)

    one_hot = torch.zeros(2, 3)
    one_hot[:, 1] = 1.0  # src1 alone, renormalised (ssum/msum) / zeroed elsewhere (mcat)
    src1, src1_mask = bank("src1")
    if method == "ssum":  # private dropped
        assert torch.allclose(src1, compose("sources_only", None, sources, one_hot))
    elif method == "msum":  # private kept
        assert torch.allclose(src1, private * sources[1])
    else:
        mcat_weights = weights * torch.tensor([0.0, 1.0, 0.0])
        assert torch.allclose(src1, compose("mcat", private, sources, mcat_weights))
        assert src1_mask.tolist() == [[False, False, True, True, False, False]] * 2

    all_src, _ = bank("all_src")
    if method == "mcat":
        assert torch.allclose(all_src, compose("mcat", torch.ones_like(private), sources, weights))
    else:
        assert torch.allclose(all_src, compose("sources_only", None, sources, weights))


def test_unknown_mask_and_source_index_fail_clearly():
    bank = _bank("ssum")
    with pytest.raises(ValueError, match="src0..src2"):
        bank("src7")
    with pytest.raises(ValueError, match="unknown mask"):
        bank("nothing")
    with pytest.raises(ValueError, match="only 'total'"):
        _bank("pt")("src0")
