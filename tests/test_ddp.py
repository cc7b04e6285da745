"""One job on several processes: 2-rank CPU DDP (gloo) gives results of the same kind as a single process
(every evaluation example once: ids 0..n-1 per task, as compt.training.datamodule numbers them)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.helpers import FAST, read_results, run_script

pytestmark = pytest.mark.slow

#: 7 evaluation examples per task: uneven shards (4 + 3) over 2 ranks
DDP_RUN = [*FAST, "eval.max_samples=7"]
CPU_DDP = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true"]


def _predictions(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]


def test_two_process_ddp_run_writes_one_complete_result_with_synced_metrics(tmp_path):
    # no hydra.run.dir: the default folder is timestamped, so rank 1 must be handed rank 0's folder
    proc = run_script(
        "train.py",
        *DDP_RUN,
        *CPU_DDP,
        "logger=wandb",
        f"paths.log_dir={tmp_path}",
        env={"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path)},
    )
    results_files = list(tmp_path.glob("outputs/**/results.json"))
    assert len(results_files) == 1, results_files
    run_dir = results_files[0].parent
    assert len(list((tmp_path / "outputs").glob("*/*"))) == 1  # no second run folder from rank 1
    wandb_runs = [p for p in tmp_path.rglob("offline-run-*") if p.is_dir()]
    assert len(wandb_runs) == 1, wandb_runs  # one W&B run (rank 0)
    assert proc.stdout.count("wrote ") == 1

    results = read_results(run_dir)
    assert results["tasks"] == ["sst2", "rte", "mnli", "stsb"]
    assert results["counts"] == {t: 7 for t in results["tasks"]}
    assert results["global_step"] == 2 * 2  # 2 epochs x (64 examples / (batch 16 x 2 ranks))
    assert results["config"]["trainer"]["devices"] == 2

    predictions = _predictions(run_dir)
    # every example exactly once, across both ranks: the ids one process gives its 7 examples per task
    assert Counter((p["task"], p["example_id"]) for p in predictions) == Counter(
        (task, example) for task in results["tasks"] for example in range(7)
    )
    for task in ("sst2", "rte", "mnli"):  # the metric covers both ranks' examples, not rank 0's 4
        rows = [p for p in predictions if p["task"] == task]
        accuracy = 100 * sum(p["value"] == p["gold"] for p in rows) / len(rows)
        assert results["metrics"][task]["accuracy"] == pytest.approx(accuracy)


def test_ddp_spawn_runs_inside_a_sweep(tmp_path):
    run_script(
        "train.py",
        "-m",  # few overrides: the job folder is named after them (255 characters at most)
        "experiment=demo",
        "trainer=ddp_spawn",
        *CPU_DDP[1:],
        "trainer.max_steps=1",
        "eval.max_samples=3",
        "method=ssum",  # one job (its two ranks are processes of their own): a -m sweep all the same
        f"hydra.sweep.dir={tmp_path}",
    )
    jobs = sorted(tmp_path.glob("*/results.json"))
    assert len(jobs) == 1
    for job in jobs:
        results = json.loads(job.read_text())
        assert results["counts"] == {t: 3 for t in results["tasks"]}
        assert results["global_step"] == 1
        assert len(_predictions(job.parent)) == 3 * len(results["tasks"])
