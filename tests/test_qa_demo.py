"""End to end: ``experiment=demo_qa`` (squad, copa, boolq) on a local folder in the hub's layout, scored as the
official definitions score its own predictions, and trained prompts beating untrained ones."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import datasets
import pytest
import torch

from compt.data.sources import bundled_demo_dir, local_file
from compt.inference import load_for_inference
from compt.prompts import PromptBank
from compt.tasks import TASK_SETS, get_task
from tests.helpers import read_results, run_script
from tests.serving import Server, demo_rows, predicted
from tests.test_predict_export import eval_rows
from tests.test_qa_tasks import official_squad

pytestmark = pytest.mark.slow
TASKS = TASK_SETS["demo_qa"]  # squad, copa, boolq


@pytest.fixture(scope="module")
def qa_run(tmp_path_factory):
    """The QA demo trained on parquet files written from the bundled rows (as `compt data snapshot` writes the
    hub's: SQuAD's nested answers, SuperGLUE's columns and label ids)."""
    root = tmp_path_factory.mktemp("qa_demo")
    for name in TASKS:
        task = get_task(name)
        for split in (task.train_split, task.eval_split):
            rows = [
                json.loads(line)
                for line in local_file(bundled_demo_dir() / name, split).read_text().splitlines()
            ]
            (root / "data" / name).mkdir(parents=True, exist_ok=True)
            datasets.Dataset.from_list(rows).to_parquet(str(root / "data" / name / f"{split}.parquet"))
    run_dir = root / "run"
    proc = run_script(
        "train.py",
        "experiment=demo_qa",
        f"data.dir={root / 'data'}",
        "eval.masks=[total,private]",
        "eval.cross_prompts=rank",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={run_dir}",
    )
    return run_dir, proc


def scores(task: str, predictions: list[dict], rows: list[dict]) -> dict[str, float]:
    """The official metric of each task from predictions and the gold rows: SQuAD EM/F1, else accuracy."""
    spec = get_task(task)
    if task == "squad":
        return official_squad([p["prediction"] for p in predictions], [spec.gold_answers(r) for r in rows])
    right = [p["prediction"] == spec.format_target(r) for p, r in zip(predictions, rows)]
    return {"accuracy": 100 * sum(right) / len(right)}


def test_results_equal_the_official_definitions_on_the_runs_own_predictions(qa_run):
    run_dir, proc = qa_run
    results = read_results(run_dir)
    assert results["tasks"] == TASKS and results["eval_mode"] == "rank"
    stored = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    for task in TASKS:
        mine = sorted((p for p in stored if p["task"] == task), key=lambda p: p["example_id"])
        rows = eval_rows(task, results)
        assert [p["target"] for p in mine] == [get_task(task).format_target(r) for r in rows]
        assert results["metrics"][task] == pytest.approx(scores(task, mine, rows), abs=1e-3), task
    assert (
        set(results["metrics"]["squad"]) == {"f1", "em"}
        and results["primary"]["squad"] == results["metrics"]["squad"]["f1"]
    )
    assert results["primary_paper"] == results["primary"]  # F1 for squad, accuracy for copa and boolq
    copa = [p for p in stored if p["task"] == "copa"]
    assert all(p["prediction"] in p["choices"] for p in copa) and len(copa) == 32
    assert all(p["answers"][0] == p["target"] for p in stored if p["task"] == "squad")  # gold answers carried
    assert (proc.stderr + proc.stdout).count("no answer candidates for squad") == 1  # said once
    assert set(results["masks"]["private"]["primary"]) == set(TASKS)  # masks evaluate every kind
    private = [json.loads(line) for line in (run_dir / "mask_predictions.jsonl").read_text().splitlines()]
    assert {p["mask"] for p in private} == {"private"} and len(private) == len(stored)
    assert all(p["prediction"] in p["choices"] for p in private if p["task"] == "copa")
    # the task × prompt matrix covers every kind; a task under its own prompt scores as in the run
    cross = results["cross_prompts"]
    assert list(cross) == TASKS and all(set(cross[p]["primary"]) == set(TASKS) for p in TASKS)
    assert {t: cross[t]["primary"][t] for t in TASKS} == pytest.approx(results["primary"])


def test_report_names_each_tasks_metric(qa_run, tmp_path):
    from compt.cli import main

    run_dir, _ = qa_run
    assert main(["report", str(run_dir), "--out", str(tmp_path)]) == 0
    table = (tmp_path / "results.md").read_text()
    assert "| squad | copa | boolq |" in table and "squad f1; copa accuracy; boolq accuracy" in table
    # per-mask confusion tables only for label words: boolq's, not squad's answers or copa's per-row choices
    confusions = (tmp_path / "confusions.md").read_text()
    assert (
        "boolq: answers per mask" in confusions and "squad:" not in confusions and "copa:" not in confusions
    )
    assert "Task × prompt" in (tmp_path / "report.md").read_text()


def test_the_qa_demo_learns_and_copa_always_answers_a_choice(qa_run):
    """Trained prompts beat the same bank untrained on every task, by greedy generation (untrained prompts make
    the backbone copy words: no valid boolq or copa answer); copa's answers are one of the row's two choices in both
    modes (``compt predict``: hub columns in, gold answers out)."""
    run_dir, _ = qa_run
    results = read_results(run_dir)
    predictor = load_for_inference(run_dir, device="cpu")
    trained = predictor.model.bank
    untrained = PromptBank(
        trained.config,
        predictor.model.backbone.get_input_embeddings().weight,
        torch.Generator().manual_seed(1),
    )
    primary = {"squad": "f1", "copa": "accuracy", "boolq": "accuracy"}
    before, after = {}, {}
    for bank, scored in ((untrained, before), (trained, after)):
        predictor.model.bank = bank
        for task in TASKS:
            rows = eval_rows(task, results)
            answers = predictor.predict(rows, task, mode="generate")
            scored[task] = scores(task, answers, rows)[primary[task]]
            if task == "copa":  # always a choice: a generated text naming none is replaced by the ranked one
                assert all(a["prediction"] in (r["choice1"], r["choice2"]) for a, r in zip(answers, rows))
                assert all(a["answers"] == [get_task("copa").format_target(r)] for a, r in zip(answers, rows))
            if task in ("boolq", "copa") and bank is untrained:
                assert not any(a["valid"] for a in answers), [a["prediction"] for a in answers[:4]]
    assert all(after[t] > before[t] for t in TASKS), (before, after)
    # copa's fallback ranking is right well above chance even untrained (the backbone met the demo's
    # cause/effect phrases in pretraining); squad and boolq go from copying words to the task
    assert after["squad"] >= before["squad"] + 30 and after["boolq"] >= before["boolq"] + 30, (before, after)
    assert sum(after.values()) / 3 >= sum(before.values()) / 3 + 20, (before, after)
    ranked = predictor.predict(eval_rows("copa", results), "copa", mode="rank")
    assert all(
        a["prediction"] in (r["choice1"], r["choice2"]) for a, r in zip(ranked, eval_rows("copa", results))
    )


def test_compt_serve_answers_the_qa_demo_as_compt_predict_does(qa_run, tmp_path):
    """Concurrent one-row requests of squad, copa and boolq (batched together by the server) are answered as
    ``compt predict`` answers the same mixed rows, in both modes: text answers, per-row choices, gold fields."""
    run_dir, _ = qa_run
    rows = demo_rows(4, TASKS)
    offline = {mode: predicted(run_dir, rows, tmp_path, mode) for mode in ("rank", "generate")}
    server = Server(run_dir, tmp_path / "serve.log")
    try:
        assert server.client.wait_ready(timeout=60)["tasks"] == TASKS
        kinds = {t["name"]: (t["kind"], t.get("choices")) for t in server.client.tasks()["tasks"]}
        assert kinds == {
            "squad": ("text", None),
            "copa": ("choice", ["choice1", "choice2"]),
            "boolq": ("classification", None),
        }
        requests = [(mode, i) for mode in offline for i in range(len(rows))]
        with ThreadPoolExecutor(6) as pool:
            served = list(pool.map(lambda r: server.client.predict(rows[r[1]], mode=r[0]), requests))
        for (mode, i), answer in zip(requests, served):
            assert answer == {**offline[mode][i], "index": 0}, (mode, i)
        assert any(a["task"] == "squad" and a["answers"] for a in served)
        assert server.client.health()["mixed_batches"] >= 1
    finally:
        assert server.stop() == 0
