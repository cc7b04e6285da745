"""The optimizer's groups and the learning-rate schedules (paper and the authors' code)."""

from __future__ import annotations

import pytest

from compt import PromptBank, PromptBankConfig
from compt.training.optim import OptimConfig, build_optimizer


def _rates(schedule: str, total: int) -> list[float]:
    bank = PromptBank(PromptBankConfig(method="pt", task_names=["a"], d_model=4, source_length=2))
    optimizer, scheduler = build_optimizer(bank, OptimConfig(lr_private=1.0, schedule=schedule), total)
    rates = []
    for _ in range(total):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_the_paper_schedule_warms_up_then_decays_to_zero_at_the_last_step():
    rates = _rates("linear", 100)  # warm-up 20 steps
    assert rates[0] == pytest.approx(1 / 20) and rates[19] == pytest.approx(1.0)
    assert rates[20] == pytest.approx(1.0) and rates[99] == pytest.approx(1 / 80)


def test_the_authors_schedule_never_reaches_zero():
    """Horizon = steps + warm-up + 5 (METHOD.md §8): at the last of 100 steps the rate is (125 − 99) / 105."""
    rates = _rates("linear_compat", 100)
    assert rates[19] == pytest.approx(1.0)
    assert rates[99] == pytest.approx((125 - 99) / (125 - 20))
    assert min(rates[20:]) > 0.24


def test_an_unknown_schedule_is_refused_by_name():
    with pytest.raises(ValueError, match="optim.schedule='cosine'"):
        OptimConfig(schedule="cosine")
