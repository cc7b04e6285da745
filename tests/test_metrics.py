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
