"""The optimizer's groups and the learning-rate schedules (paper and the authors' code)."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import get_linear_schedule_with_warmup

from compt import PromptBank, PromptBankConfig
from compt.config.run_config import RunConfig
from compt.config.schema import TrainSchema
from compt.optim import OptimConfig, build_optimizer
from compt.recipes.single_task import single_task_configs
from tests.test_configs import composed


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


def test_the_authors_schedule_without_their_step_count_uses_the_real_one():
    """k = every row: A = the run's 100 steps, warm-up 20 (rate 0 at step 0, as transformers' schedule),
    horizon 125: at the last step the rate is (125 − 99) / 105."""
    rates = _rates("linear_compat", 100)
    assert rates[0] == 0.0 and rates[10] == pytest.approx(0.5) and rates[20] == pytest.approx(1.0)
    assert rates[99] == pytest.approx((125 - 99) / (125 - 20))


def _transformers_rates(warmup: float, horizon: float, steps: int) -> list[float]:
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=warmup, num_training_steps=horizon)
    return [schedule.lr_lambdas[0](step) for step in range(steps)]


@pytest.mark.parametrize(
    ("overrides", "rows", "epochs", "batch", "last"),
    [
        (("k=8",), 8 * 8, 100, 20, 0.0),  # GLUE, SSUM: 50 epochs doubled at k <= 10
        (("k=16",), 16 * 8, 50, 20, 40 / 325),
        (("k=32", "method=mcat"), 32 * 8, 40, 20, None),
        (("k=8", "method=pt_single", "tasks=[rte]"), 8, 40, 12, None),  # PT.json: batch 12 capped at N = 8
    ],
)
def test_the_authors_schedule_is_transformers_with_their_step_count(overrides, rows, epochs, batch, last):
    """``attempt/run_seq2seq.py`` c7a19a2: N = k × tasks (L1203–1207), bs = min(N, bs) (L1209),
    A = ⌊N·E/bs⌋ (L1229–1230), warm-up 0.2·A as a float (L1232–1235), horizon A + warm-up + 5 (L1236), given to
    ``get_linear_schedule_with_warmup`` (L1989–1992); the run takes E·⌈N/bs⌉ steps."""
    schema = TrainSchema.from_hydra(composed("protocol=authors", *overrides))
    if "method=pt_single" in overrides:  # one run per task: its config has that task alone
        schema = single_task_configs(schema)["rte"]
    config = RunConfig.from_schema(schema)
    their_batch = min(rows, batch)
    steps = rows * epochs // their_batch
    warmup = 0.2 * steps
    horizon = steps + warmup + 5
    real_steps = epochs * math.ceil(rows / batch)
    assert (config.epochs, config.data.batch_size, config.optim.compat_steps) == (epochs, batch, steps)
    bank = PromptBank(PromptBankConfig(method="pt", task_names=["a"], d_model=4, source_length=2))
    _, schedule = build_optimizer(bank, config.optim, real_steps)
    ours = [schedule.lr_lambdas[0](step) for step in range(real_steps)]
    assert ours == pytest.approx(_transformers_rates(warmup, horizon, real_steps), abs=1e-12)
    if last is not None:
        assert ours[-1] == pytest.approx(last)
    if overrides == ("k=8",):  # 320 steps counted, 400 taken: the rate is 0 for the last 11
        assert (steps, real_steps, horizon) == (320, 400, 389.0)
        assert ours[388] > 0 and max(ours[389:]) == 0.0 and len(ours[389:]) == 11


def test_an_unknown_schedule_is_refused_by_name():
    with pytest.raises(ValueError, match="optim.schedule='cosine'"):
        OptimConfig(schedule="cosine")
