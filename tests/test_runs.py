"""The run folder (:mod:`compt.runs`) and the small shared helpers (:mod:`compt.utils`)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from compt.errors import IncompleteRunError, RunNotFoundError
from compt.runs import RunDir
from compt.utils import evaluating, json_safe


def test_status_follows_the_files_a_run_writes(tmp_path):
    run = RunDir(tmp_path / "job")
    assert run.status() == "new" and not run.is_run()
    run.last_checkpoint.parent.mkdir(parents=True)
    run.last_checkpoint.write_bytes(b"")
    assert run.status() == "resume"
    run.write_results({"status": "running"})
    assert run.status() == "resume" and run.is_run()
    run.write_results({"status": "complete", "avg": math.nan})
    assert run.status() == "done" and run.is_complete()
    assert run.complete_results() == {"status": "complete", "avg": None}  # JSON has no NaN


@pytest.mark.parametrize(
    ("content", "reason"),
    [("{not json", "unreadable results.json"), ('{"status": "failed"}', "status='failed'")],
)
def test_an_incomplete_run_says_why(tmp_path, content, reason):
    run = RunDir(tmp_path)
    run.results_file.write_text(content)
    with pytest.raises(IncompleteRunError, match=reason):
        run.complete_results()
    assert not run.is_complete()


def test_config_from_results_else_hydra(tmp_path):
    run = RunDir(tmp_path)
    with pytest.raises(RunNotFoundError, match="not a compt run folder"):
        run.config()
    run.hydra_dir.mkdir()
    (run.hydra_dir / "config.yaml").write_text("seed: 3\nlr: 1e-3\n")
    assert run.config().seed == 3 and run.config().lr == 1e-3
    run.write_results({"status": "complete", "config": {"seed": 4}})
    assert run.config().seed == 4
    with pytest.raises(RunNotFoundError, match="no such folder"):
        RunDir(tmp_path / "missing").config()


def test_predictions_are_sorted_and_carry_their_input(tmp_path):
    run = RunDir(tmp_path)
    rows = [
        {"task": "sst2", "example_id": 1, "value": math.nan},
        {"task": "rte", "example_id": 0, "value": 1.0},
        {"task": "sst2", "example_id": 0, "value": 0.0},
    ]
    inputs = {"sst2": [{"input_text": "a", "target_text": "b"}] * 2}
    run.write_predictions(rows, inputs)
    written = [json.loads(line) for line in run.predictions_file.read_text().splitlines()]
    assert [(w["task"], w["example_id"]) for w in written] == [("rte", 0), ("sst2", 0), ("sst2", 1)]
    assert written[0]["input"] is None and written[1]["input"] == "a" and written[2]["value"] is None


def test_every_masks_predictions_are_kept_the_main_ones_where_they_always_were(tmp_path):
    run = RunDir(tmp_path)
    rows = [
        {"task": t, "mask": m, "example_id": i, "value": 1.0}
        for m in ("private", "total", "src0")
        for t in ("sst2", "rte")
        for i in (1, 0)
    ]
    run.write_predictions(rows, {}, main_mask="total")
    main = [json.loads(line) for line in run.predictions_file.read_text().splitlines()]
    assert [(w["mask"], w["task"], w["example_id"]) for w in main] == [
        ("total", "rte", 0),
        ("total", "rte", 1),
        ("total", "sst2", 0),
        ("total", "sst2", 1),
    ]
    others = [json.loads(line) for line in run.mask_predictions_file.read_text().splitlines()]
    assert [w["mask"] for w in others] == ["private"] * 4 + ["src0"] * 4  # mask by mask, as evaluated
    assert len(run.read_predictions()) == 12
    run.write_predictions(rows[4:8], {}, main_mask="total")  # a re-test under the main mask only
    assert not run.mask_predictions_file.exists() and len(run.read_predictions()) == 4
    # a run written before masks were recorded: its lines are the main mask's (results.json's first)
    run.predictions_file.write_text(json.dumps({"task": "rte", "example_id": 0}) + "\n")
    run.write_results({"status": "complete", "masks": {"src1": {}, "total": {}}})
    assert run.read_predictions() == [{"task": "rte", "example_id": 0, "mask": "src1"}]


def test_evaluating_restores_the_previous_mode():
    module = torch.nn.Dropout()
    with evaluating(module):
        assert not module.training
    assert module.training
    module.eval()
    with pytest.raises(RuntimeError), evaluating(module):
        module.train()
        raise RuntimeError
    assert not module.training


def test_json_safe_replaces_non_finite_numbers_at_any_depth():
    value = {"a": [1.0, math.inf, (math.nan, 2)], "b": {"c": -math.inf}, "d": "nan"}
    assert json_safe(value) == {"a": [1.0, None, [None, 2]], "b": {"c": None}, "d": "nan"}
