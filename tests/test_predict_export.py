"""``compt predict`` / :mod:`compt.inference`, ``compt export`` (PEFT prompt-tuning adapters) and ``compt serve``
on the T5 demo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from compt import ComptModel, PromptBank, PromptBankConfig
from compt.cli import main
from compt.data import bundled_demo_dir, eval_indices
from compt.data.sources import local_file
from compt.errors import ExportError, InferenceError
from compt.inference import composed_prompt, export_peft, load_for_inference, read_rows
from compt.runs import locate_bank
from compt.tasks import get_task
from tests.helpers import FAST, read_results, run_script
from tests.serving import Server, bad_requests_get_one_line, demo_rows, served_like_predict

TINY_D = 64  # the bundled tiny T5's hidden size


def save_bank(folder: Path, method: str = "ssum", position: str = "after", **options) -> Path:
    """A freshly initialised bank for the tiny backbone, saved like a run's ``bank/``."""
    config = PromptBankConfig(
        method=method,
        task_names=["rte", "sst2"],
        d_model=TINY_D,
        position=position,
        backbone="tiny",
        **options,
    )
    return PromptBank(config, generator=torch.Generator().manual_seed(0)).save(folder / "bank")


def eval_rows(task: str, results: dict) -> list[dict]:
    """The raw rows (hub columns) a demo run evaluated for ``task``, in its example-id order."""
    spec = get_task(task)
    path = local_file(bundled_demo_dir() / task, spec.eval_split)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    evaluation = results["config"]["eval"]
    return [rows[i] for i in eval_indices(task, len(rows), evaluation["max_samples"], evaluation["seed"])]


# ---------------------------------------------------------------------------------------------- fast
def test_locate_bank_accepts_a_run_folder_or_the_bank_folder(tmp_path):
    bank_dir = save_bank(tmp_path)
    (tmp_path / ".hydra").mkdir()
    assert locate_bank(tmp_path).bank_dir == bank_dir
    assert locate_bank(bank_dir).run_dir == tmp_path
    with pytest.raises(InferenceError, match="holds no prompt bank"):
        locate_bank(tmp_path / ".hydra")


def test_predict_refuses_a_task_the_bank_was_not_trained_on(tmp_path):
    predictor = load_for_inference(save_bank(tmp_path), device="cpu")
    with pytest.raises(InferenceError, match="its tasks are: rte, sst2"):
        predictor.predict([{"sentence": "fine"}], task="cola")
    [row] = predictor.predict([{"sentence": "a fine film", "label": 1}], task="sst2")
    assert row["prediction"] in ("negative", "positive") and row["valid"] and row["gold"] == 1.0


def test_export_refuses_an_after_bank_unless_allowed(tmp_path):
    bank_dir = save_bank(tmp_path, position="after")
    with pytest.raises(ExportError, match="position='after'"):
        export_peft(bank_dir, "rte", tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    assert main(["export", "--bank", str(tmp_path), "--task", "rte", "--out", str(tmp_path / "x")]) == 2
    with pytest.warns(UserWarning, match="Exporting anyway"):
        out = export_peft(bank_dir, "rte", tmp_path / "allowed", allow_position_change=True)
    readme = (out / "README.md").read_text()
    assert "**before** the input tokens" in readme and "placement differs from training" in readme


def test_export_unknown_task_lists_the_banks_tasks(tmp_path):
    with pytest.raises(ExportError, match="its tasks are: rte, sst2"):
        export_peft(save_bank(tmp_path, position="before"), "cola", tmp_path / "out")


def test_mcat_mask_exports_only_the_kept_rows(tmp_path):
    bank_dir = save_bank(tmp_path, method="mcat", position="before", n_sources=3, source_length=4)
    bank = PromptBank.load(bank_dir).eval()
    exported = composed_prompt(bank, "sst2", "src1")
    with torch.no_grad():
        prompts, rows = bank("src1")
    assert exported.prompt.shape == (4, TINY_D)  # one 4-row segment of 3
    torch.testing.assert_close(exported.prompt, prompts[1][rows[1]])
    assert composed_prompt(bank, "sst2").prompt.shape == (12, TINY_D)


# ---------------------------------------------------------------------------------------------- real run
@pytest.fixture(scope="module")
def before_run(tmp_path_factory) -> Path:
    """A one-step demo run (ssum, rank evaluation) with the prompt before the text, PEFT's placement."""
    run_dir = tmp_path_factory.mktemp("predict") / "run"
    run_script(
        "train.py",
        *FAST,
        "method=ssum",
        "prompt.position=before",
        "trainer.max_steps=1",
        "eval.max_samples=4",
        f"hydra.run.dir={run_dir}",
    )
    return run_dir


@pytest.mark.slow
def test_predict_reproduces_the_runs_own_predictions(before_run):
    results = read_results(before_run)
    stored = [json.loads(line) for line in (before_run / "predictions.jsonl").read_text().splitlines()]
    predictor = load_for_inference(before_run, device="cpu")
    assert predictor.mode == results["eval_mode"] == "rank"
    for task in results["tasks"]:
        mine = predictor.predict(eval_rows(task, results), task)
        theirs = sorted((p for p in stored if p["task"] == task), key=lambda p: p["example_id"])
        assert len(mine) == len(theirs) == 4
        for m, t in zip(mine, theirs):
            assert (m["input"], m["prediction"], m["value"]) == (t["input"], t["prediction"], t["value"])
            assert m["gold"] == pytest.approx(t["gold"])


@pytest.mark.slow
def test_predict_cli_writes_json_lines(before_run, tmp_path):
    results = read_results(before_run)
    rows = eval_rows("rte", results)
    source = tmp_path / "rte.jsonl"
    source.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "label"}) + "\n" for r in rows))
    assert read_rows(source)[0]["sentence1"] == rows[0]["sentence1"]
    out = tmp_path / "out.jsonl"
    argv = ["predict", "--bank", str(before_run / "bank"), "--task", "rte", "--input", str(source)]
    assert main([*argv, "--output", str(out)]) == 0
    written = [json.loads(line) for line in out.read_text().splitlines()]
    expected = load_for_inference(before_run, device="cpu").predict(rows, "rte")
    assert [w["prediction"] for w in written] == [e["prediction"] for e in expected]
    assert all("gold" not in w for w in written)
    assert main([*argv[:4], "cola", *argv[5:]]) == 2


@pytest.mark.slow
def test_exported_peft_adapter_gives_compt_logits(before_run, tmp_path):
    from peft import PeftModel

    from compt import load_backbone

    out = export_peft(before_run, "rte", tmp_path / "adapter")
    assert main(["export", "--bank", str(before_run), "--task", "rte", "--out", str(tmp_path / "cli")]) == 0
    assert "**before** the input tokens" in (out / "README.md").read_text()
    backbone, tokenizer = load_backbone("tiny")
    bank = PromptBank.load(before_run / "bank")
    model = ComptModel(backbone, bank, backbone_dropout=False).eval()
    texts = [
        "rte: sentence1: a man is singing sentence2: a man sings",
        "rte: sentence1: short sentence2: x y z w",
    ]
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    labels = tokenizer(["entailment", "not_entailment"], padding=True, return_tensors="pt").input_ids
    labels[labels == tokenizer.pad_token_id] = -100
    task_ids = torch.full((2,), bank.task_names.index("rte"))
    with torch.no_grad():
        embeds, attention = model.prompted_inputs(encoded.input_ids, encoded.attention_mask, task_ids)
        expected = backbone(inputs_embeds=embeds, attention_mask=attention, labels=labels).logits
        peft_model = PeftModel.from_pretrained(backbone, str(out)).eval()
        logits = peft_model(
            input_ids=encoded.input_ids, attention_mask=encoded.attention_mask, labels=labels
        ).logits
    assert peft_model.peft_config["default"].num_virtual_tokens == bank.prompt_length
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------------- compt serve
@pytest.fixture(scope="module")
def t5_server(before_run, tmp_path_factory):
    """``compt serve`` of the demo run on a free port of 127.0.0.1 (small body and input limits)."""
    folder = tmp_path_factory.mktemp("serve")
    server = Server(
        before_run, folder / "serve.log", "--max-body-bytes", "65536", "--max-input-tokens", "128"
    )
    yield server, folder
    server.stop()


@pytest.mark.slow
def test_a_burst_of_mixed_requests_is_served_as_compt_predict_answers_it(before_run, t5_server):
    server, folder = t5_server
    served_like_predict(before_run, server, folder, clients=8)
    tasks = server.client.tasks()["tasks"]
    assert [t["name"] for t in tasks] == ["sst2", "rte", "mnli", "stsb"]
    assert tasks[1]["input_columns"] == ["sentence1", "sentence2"] and tasks[3]["labels"] is None
    assert tasks[2]["labels"] == ["entailment", "neutral", "contradiction"]


@pytest.mark.slow
def test_bad_requests_get_one_line_and_the_server_keeps_answering(before_run, t5_server):
    server, _ = t5_server
    row = demo_rows(1)[1]
    [answer] = load_for_inference(before_run, device="cpu").predict([row])
    bad_requests_get_one_line(server, row, answer)
    assert server.stop() == 0 and "compt: stopped by SIGTERM" in server.log.read_text()
