"""Metrics against hand-computed values on fixed predictions (invalid outputs included)."""

from __future__ import annotations

import math

import pytest
import torch

from compt.evaluation import TaskMetrics, primary_metric
from compt.tasks import get_task

NAN = float("nan")


def test_matthews_f1_accuracy_with_an_invalid_prediction():
    tasks = [get_task("cola"), get_task("mrpc")]
    metrics = TaskMetrics(tasks)
    # preds 1 1 0 0 1 invalid; gold 1 0 0 0 1 0 → the invalid one scores as the wrong class (1)
    preds = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, NAN])
    gold = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    metrics.update_batch(torch.zeros(6, dtype=torch.long), preds, gold)
    metrics.update_batch(torch.ones(6, dtype=torch.long), preds, gold)
    out = metrics.compute()
    # TP 2, FP 2, TN 2, FN 0: MCC = (2·2 − 2·0) / sqrt(4·2·4·2) = 0.5; F1 = 2·(1/2·1)/(1/2+1) = 2/3
    assert out["tasks"]["cola"]["matthews"] == pytest.approx(50.0)
    assert out["tasks"]["cola"]["accuracy"] == pytest.approx(100 * 4 / 6)
    assert out["tasks"]["mrpc"]["f1"] == pytest.approx(100 * 2 / 3)
    assert out["primary"] == pytest.approx({"cola": 50.0, "mrpc": 100 * 2 / 3})
    assert out["avg"] == pytest.approx((50.0 + 100 * 2 / 3) / 2)
    assert out["counts"] == {"cola": 6, "mrpc": 6}
    assert out["invalid"] == {"cola": 1, "mrpc": 1}


def test_pearson_spearman_for_stsb():
    metrics = TaskMetrics([get_task("stsb")])
    # the invalid prediction scores as 2.5 (middle of 0..5): x = 1 2 3 2.5, y = 1 3 2 4
    metrics.update(0, torch.tensor([1.0, 2.0, 3.0, NAN]), torch.tensor([1.0, 3.0, 2.0, 4.0]))
    out = metrics.compute()
    assert out["tasks"]["stsb"]["pearson"] == pytest.approx(100 * 1.75 / math.sqrt(2.1875 * 5), rel=1e-5)
    assert out["tasks"]["stsb"]["spearman"] == pytest.approx(40.0, rel=1e-5)  # 1 − 6·6/(4·15)
    assert out["primary"]["stsb"] == out["tasks"]["stsb"]["pearson"]


def test_compat_reading_changes_the_primary_metrics():
    cola, stsb = get_task("cola"), get_task("stsb")
    assert primary_metric(cola) == "matthews" and primary_metric(cola, compat=True) == "accuracy"
    assert primary_metric(stsb, compat=True) == "spearman"
    metrics = TaskMetrics([cola], compat=True)
    metrics.update(0, torch.tensor([1.0, 0.0, 1.0, 1.0]), torch.tensor([1.0, 0.0, 0.0, 1.0]))
    assert metrics.compute()["primary"]["cola"] == pytest.approx(75.0)


def test_multiclass_accuracy_and_reset():
    metrics = TaskMetrics([get_task("mnli")])
    metrics.update(0, torch.tensor([0.0, 1.0, 2.0, NAN]), torch.tensor([0.0, 2.0, 2.0, 1.0]))
    assert metrics.compute()["tasks"]["mnli"]["accuracy"] == pytest.approx(50.0)
    metrics.reset()
    assert metrics.compute()["tasks"] == {}
    metrics.update(0, torch.tensor([1.0]), torch.tensor([1.0]))
    assert metrics.compute()["counts"] == {"mnli": 1}


def test_constant_predictions_give_zero_correlation_not_nan():
    metrics = TaskMetrics([get_task("stsb")])
    metrics.update(0, torch.tensor([2.0, 2.0, 2.0]), torch.tensor([1.0, 3.0, 2.0]))
    out = metrics.compute()
    assert out["tasks"]["stsb"] == {"pearson": 0.0, "spearman": 0.0}
    assert out["avg"] == 0.0


def test_both_readings_on_hand_made_predictions():
    """cola: Matthews (configured) and accuracy (paper); qqp: F1 and accuracy; stsb: Pearson and Spearman."""
    cola, qqp, stsb = get_task("cola"), get_task("qqp"), get_task("stsb")
    metrics = TaskMetrics([cola, qqp, stsb])
    # cola/qqp: preds 1 1 0 0 1 0 1 0, gold 1 0 0 1 1 0 0 0 → TP 2, FP 2, TN 3, FN 1, accuracy 5/8
    preds = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    gold = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    metrics.update(0, preds, gold)
    metrics.update(1, preds, gold)
    # stsb: x = 1 2 3 4, y = 1 3 2 5: ranks 1 2 3 4 vs 1 3 2 4 → spearman 1 − 6·2/(4·15) = 0.8
    metrics.update(2, torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([1.0, 3.0, 2.0, 5.0]))
    out = metrics.compute()
    mcc = (2 * 3 - 2 * 1) / math.sqrt(4 * 3 * 5 * 4)  # (TP·TN − FP·FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN))
    f1 = 2 * 2 / (2 * 2 + 2 + 1)
    # pearson of x and y: means 2.5 and 2.75; cov 1.75+... computed from the deviations
    dx, dy = [-1.5, -0.5, 0.5, 1.5], [-1.75, 0.25, -0.75, 2.25]
    pearson = sum(a * b for a, b in zip(dx, dy)) / math.sqrt(sum(a * a for a in dx) * sum(b * b for b in dy))
    assert out["primary"] == pytest.approx({"cola": 100 * mcc, "qqp": 100 * f1, "stsb": 100 * pearson})
    assert out["primary_paper"] == pytest.approx({"cola": 62.5, "qqp": 62.5, "stsb": 80.0})
    assert out["avg"] == pytest.approx(100 * (mcc + f1 + pearson) / 3)
    assert out["avg_paper"] == pytest.approx((62.5 + 62.5 + 80.0) / 3)
    compat = TaskMetrics([cola, qqp, stsb], compat=True)
    compat.update(1, preds, gold)
    assert compat.compute()["primary"] == pytest.approx({"qqp": 62.5})  # compat qqp is accuracy, not F1


def test_the_authors_answer_parsing_reads_the_first_word_and_scores_a_bad_stsb_answer_minus_one():
    from dataclasses import replace

    rte = replace(get_task("rte"), answer_parsing="first_word_compat")
    assert rte.parse("entailment because") == 0.0 and get_task("rte").parse("entailment because") is None
    assert rte.parse("") is None
    stsb = replace(get_task("stsb"), answer_parsing="first_word_compat")
    metrics = TaskMetrics([stsb])
    # the invalid answer scores −1: x = 1 2 −1, y = 1 2 3 → spearman of ranks 2 3 1 vs 1 2 3 = 1 − 6·6/(3·8)
    metrics.update(0, torch.tensor([1.0, 2.0, NAN]), torch.tensor([1.0, 2.0, 3.0]))
    out = metrics.compute()
    assert out["tasks"]["stsb"]["spearman"] == pytest.approx(100 * (1 - 36 / 24), abs=1e-3)
    assert out["invalid"] == {"stsb": 1}
